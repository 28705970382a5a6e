"""Per-batch pre-aggregates of `latest_signals` and `daily_activity`, in one pass over the batch's rows.

The two tables used to be fed by materialized views over every inserted sample, which cost
about as much as the insert itself (GROUP BY on 500 k rows per batch, twice). Here numba folds a
batch to its last value per (vehicle, signal) and to one row per (message, day) with that day's
odometer and speed extremes; views on two Null tables turn those few rows into the same
aggregate states (schemas/clickhouse/0008_ingest.sql). `aggregates_reference` is the plain twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.pipeline._batch import Decoded
from vehicle_ingest.storage import DailyRows, LatestRows

__all__ = ["AggregateIds", "aggregates_numba", "aggregates_reference"]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class AggregateIds:
    """Which signals feed the aggregates: catalog signals, and the two `daily_activity` keeps."""

    speed: int
    odometer: int
    known: np.ndarray  # bool per signal id (65536)

    @classmethod
    def of(cls, catalog: SignalCatalog) -> AggregateIds:
        speed, odometer = catalog.by_path("Vehicle.Speed").id, catalog.by_path("Vehicle.TraveledDistance").id
        return cls(speed, odometer, np.asarray(catalog.known, dtype=bool))


def aggregates_numba(
    decoded: Decoded, vins: list[str], vin_index: np.ndarray, accepted: np.ndarray, ids: AggregateIds
) -> tuple[LatestRows, DailyRows]:
    """The aggregate rows of the accepted messages' samples (catalog signals only)."""
    s = decoded.signals
    msg, sig, ts, value = s.msg, s.signal_id, s.ts, s.value
    rows = accepted[msg] & ids.known[sig]
    if not rows.all():  # usually every row is kept: no copies then
        msg, sig, ts, value = msg[rows], sig[rows], ts[rows], value[rows]
    veh = vin_index[msg].astype(np.int64)
    best = _latest(_group(veh * 65536 + sig), ts)
    latest = LatestRows(vins, veh[best].astype(np.int32), sig[best], value[best], ts[best])
    day = ts // DAY_MS
    day0 = int(day.min()) if len(day) else 0
    span = int(day.max()) - day0 + 1 if len(day) else 1
    group = _group(msg.astype(np.int64) * span + (day - day0))
    first, omin, omax, has_o, smax, has_s = _daily(group, sig, value, ids.speed, ids.odometer)
    m = msg[first]
    daily = DailyRows(vins, vin_index[m], day[first], decoded.messages.seq[m], omin, omax, has_o, smax, has_s)
    return latest, daily


_FIBONACCI = np.uint64(11400714819323198485)  # 2^64 / golden ratio: spreads consecutive keys


@njit(cache=True, nogil=True)
def _group(keys: np.ndarray) -> np.ndarray:
    """Group number per row (0, 1, ... in order of first appearance) of equal keys: an open-addressing hash.

    A row with its predecessor's key skips the hash: a message carries each signal's samples in
    one run, so most rows do, and the table is sized by the runs (cache-sized, not 32 MB).
    """
    n = len(keys)
    runs = 0
    for i in range(n):
        if i == 0 or keys[i] != keys[i - 1]:
            runs += 1
    bits = 1
    while (1 << bits) < 2 * runs:
        bits += 1
    mask = (1 << bits) - 1
    slot_key = np.empty(mask + 1, dtype=np.int64)
    slot_group = np.full(mask + 1, -1, dtype=np.int64)
    group = np.empty(n, dtype=np.int64)
    groups = 0
    for i in range(n):
        if i > 0 and keys[i] == keys[i - 1]:
            group[i] = group[i - 1]
            continue
        h = np.int64((np.uint64(keys[i]) * _FIBONACCI) >> np.uint64(64 - bits))
        while slot_group[h] >= 0 and slot_key[h] != keys[i]:
            h = (h + 1) & mask
        if slot_group[h] < 0:
            slot_key[h] = keys[i]
            slot_group[h] = groups
            groups += 1
        group[i] = slot_group[h]
    return group


@njit(cache=True, nogil=True)
def _latest(group: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per group, the row with the latest timestamp; ties keep the first row seen."""
    groups = group.max() + 1 if len(group) else 0
    best = np.full(groups, -1, dtype=np.int64)
    for i in range(len(group)):
        g = group[i]
        if best[g] < 0 or ts[i] > ts[best[g]]:
            best[g] = i
    return best


@njit(cache=True, nogil=True)
def _daily(
    group: np.ndarray, sig: np.ndarray, value: np.ndarray, speed: int, odometer: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (message, day) group: its first row, odometer min / max and speed max (with whether they exist)."""
    groups = group.max() + 1 if len(group) else 0
    first = np.full(groups, -1, dtype=np.int64)
    omin = np.full(groups, np.inf)
    omax = np.full(groups, -np.inf)
    smax = np.full(groups, -np.inf)
    has_o = np.zeros(groups, dtype=np.bool_)
    has_s = np.zeros(groups, dtype=np.bool_)
    for i in range(len(group)):
        g = group[i]
        if first[g] < 0:
            first[g] = i
        if sig[i] == odometer:
            has_o[g] = True
            omin[g] = min(omin[g], value[i])
            omax[g] = max(omax[g], value[i])
        elif sig[i] == speed:
            has_s[g] = True
            smax[g] = max(smax[g], value[i])
    return first, omin, omax, has_o, smax, has_s


def aggregates_reference(
    decoded: Decoded, vins: list[str], vin_index: np.ndarray, accepted: np.ndarray, ids: AggregateIds
) -> tuple[LatestRows, DailyRows]:
    """The same rows in the same order, one sample at a time in plain Python: the parity test's twin."""
    s, m = decoded.signals, decoded.messages
    latest: dict[tuple[int, int], tuple[int, int, float]] = {}  # (vehicle, signal) -> (row ts, signal, value)
    daily: dict[tuple[int, int], list[float]] = {}  # (msg, day) -> [odo min, odo max, has odo, speed max, has speed]
    for msg, sig, ts, value in zip(s.msg.tolist(), s.signal_id.tolist(), s.ts.tolist(), s.value.tolist(), strict=True):
        if not accepted[msg] or not ids.known[sig]:
            continue
        key = (int(vin_index[msg]), sig)
        if key not in latest or ts > latest[key][0]:
            latest[key] = (ts, sig, value)
        day = daily.setdefault((msg, ts // DAY_MS), [np.inf, -np.inf, 0.0, -np.inf, 0.0])
        if sig == ids.odometer:
            day[0], day[1], day[2] = min(day[0], value), max(day[1], value), 1.0
        elif sig == ids.speed:
            day[3], day[4] = max(day[3], value), 1.0
    lk, lv = list(latest), list(latest.values())
    dk, dv = list(daily), list(daily.values())
    msgs = np.array([k[0] for k in dk], dtype=np.int64)
    return (
        LatestRows(
            vins,
            np.array([k[0] for k in lk], dtype=np.int32),
            np.array([v[1] for v in lv], dtype=np.uint16),
            np.array([v[2] for v in lv], dtype=np.float64),
            np.array([v[0] for v in lv], dtype=np.int64),
        ),
        DailyRows(
            vins,
            vin_index[msgs],
            np.array([k[1] for k in dk], dtype=np.int64),
            m.seq[msgs],
            np.array([v[0] for v in dv]),
            np.array([v[1] for v in dv]),
            np.array([v[2] for v in dv], dtype=bool),
            np.array([v[3] for v in dv]),
            np.array([v[4] for v in dv], dtype=bool),
        ),
    )
