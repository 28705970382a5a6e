"""The watched rows of a batch: picked in one numba pass per table, read in place through their positions.

A `Part` is one table's watched rows (signals, or cockpit events) as positions `hit` into the
batch's own columns, so the in-order path gathers nothing per row but the values its conditions
need. The sorted path wants one row per (row, channel) instead: `rows_per_channel` builds those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vehicle_ingest.moments._crossings import watched_rows
from vehicle_ingest.pipeline import Decoded, Plan

__all__ = ["Part", "Rows", "Watch", "concat_rows", "fired_rows", "pick", "rows_per_channel"]

Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # vin index, channel, ts, value, msg


@dataclass(frozen=True, slots=True)
class Watch:
    """Source id -> channels, as the kernels read it: source s has channels `chans[first[s]:first[s + 1]]`."""

    first: np.ndarray  # int64, one more than the largest source id + 1
    chans: np.ndarray  # int64
    width: int  # most channels of one source

    @classmethod
    def of(cls, by_source: dict[int, list[int]]) -> Watch:
        counts = np.zeros(max(by_source, default=-1) + 1, dtype=np.int64)
        for s, chans in by_source.items():
            counts[s] = len(chans)
        chans = [c for s in sorted(by_source) for c in by_source[s]]
        first = np.r_[0, np.cumsum(counts)].astype(np.int64)
        return cls(first, np.array(chans, dtype=np.int64), int(counts.max(initial=0)))

    def channels(self, source: int) -> list[int]:
        chans: list[int] = self.chans[self.first[source] : self.first[source + 1]].tolist()
        return chans


@dataclass(frozen=True, slots=True)
class Part:
    """The watched rows of one table of the batch (signals or events): positions `hit` into its columns."""

    watch: Watch
    hit: np.ndarray  # int64, in batch order
    seen: np.ndarray  # bool per source id: has rows in `hit`
    source: np.ndarray
    msg: np.ndarray
    ts: np.ndarray
    value: np.ndarray | None  # None for events (their value is 1)

    def values(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The value of `rows` (default: every row in `hit`)."""
        rows = self.hit if rows is None else rows
        return np.ones(len(rows)) if self.value is None else self.value[rows]


def pick(decoded: Decoded, plan: Plan, signals: Watch, events: Watch) -> tuple[list[Part], np.ndarray]:
    """The watched rows of accepted messages per table, and which batch VINs have any."""
    present = np.zeros(len(plan.vins), dtype=bool)
    s, e = decoded.signals, decoded.events
    parts = []
    for watch, source, msg, ts, value in (
        (signals, s.signal_id, s.msg, s.ts, s.value),
        (events, e.event_id, e.msg, e.ts, None),
    ):
        if len(watch.chans) == 0 or len(source) == 0:
            continue
        seen = np.zeros(len(watch.first) - 1, dtype=bool)
        hit = watched_rows(source, msg, plan.accepted, plan.vin_index, watch.first, seen, present)
        if len(hit):
            parts.append(Part(watch, hit, seen, source, msg, ts, value))
    return parts, present


def fired_rows(part: Part, at: np.ndarray, chan: np.ndarray, vin_index: np.ndarray) -> Rows:
    """The rows `hit[at]` of a part, on channels `chan`."""
    rows = part.hit[at]
    msg = part.msg[rows].astype(np.int64)
    return vin_index[msg].astype(np.int64), chan, part.ts[rows], part.values(rows), msg


def rows_per_channel(parts: list[Part], vin_index: np.ndarray) -> Rows:
    """Each watched row once per channel of its source (a signal two moments watch: twice); batch order per group."""
    out = []
    for part in parts:
        picked = part.source[part.hit]
        for src in np.flatnonzero(part.seen).tolist():
            rows = part.hit[picked == src]
            msg = part.msg[rows].astype(np.int64)
            vidx, ts, value = vin_index[msg].astype(np.int64), part.ts[rows], part.values(rows)
            for c in part.watch.channels(src):
                out.append((vidx, np.full(len(rows), c, np.int64), ts, value, msg))
    return concat_rows(out)


def concat_rows(parts: list[Rows]) -> Rows:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        return none, none, none, np.zeros(0), none
    vidx, chan, ts, value, msg = (np.concatenate(column) for column in zip(*parts, strict=True))
    return vidx, chan, ts, value, msg
