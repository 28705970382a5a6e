"""What the store already knows about moments: the state is rebuilt from it, never kept in a table of its own.

After a start or a crash, a vehicle's state per channel is what its stored samples say up to
just before the batch: armed unless the fire condition held more recently than the re-arm one.
That is exactly where the state machine would stand (with fire and re-arm never holding for the
same value). Cool-downs come from the moments already in the outbox (`tag_history`, action
`fired`), owners from `ownership`. Values travel as bound parameters only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vehicle_ingest.moments._definitions import MomentDefinition
from vehicle_ingest.storage import Store

__all__ = ["LOOKBACK_MS", "ChannelKey", "fired_history", "last_crossings", "owners_of", "vins_with_history"]

# How far back a vehicle's samples are read to rebuild its state; older crossings are forgotten
# (a channel silent for this long starts armed). Moments that never re-arm read all history.
LOOKBACK_MS = 30 * 86_400_000
_CHUNK = 2000  # VINs per statement: they travel in the query text (max_query_size)
_Last = dict[tuple[str, int, int], tuple[int, int]]  # what last_crossings returns


@dataclass(frozen=True, slots=True)
class ChannelKey:
    vin: str
    source: int  # signal id, or event id for an event moment
    before_ms: int  # only rows strictly before this count (the batch's first row of that channel)
    event: bool = False  # an event id (signal 5 and event 5 are different channels)

    @property
    def text(self) -> str:
        """What `_before` compares: table, vin and source."""
        return f"{'e' if self.event else 's'}:{self.vin}:{self.source}"


def vins_with_history(store: Store, moments: Sequence[MomentDefinition]) -> set[str]:
    """VINs with a stored sample of a watched signal or a stored watched event, read once at start.

    Only their state is rebuilt from the store: a VIN first seen after the start has all its
    watched history in this process (each of its batches passes the engine before it is acked).
    """
    signal_ids = sorted({s for m in moments if m.event_id is None for s in m.signal_ids})
    event_ids = sorted({int(m.event_id) for m in moments if m.event_id is not None})
    queries = []
    if signal_ids:  # latest_signals: one row per (vin, signal), written with every insert
        queries.append(("SELECT DISTINCT toString(vin) FROM latest_signals WHERE signal_id IN %(ids)s", signal_ids))
    if event_ids:
        queries.append(("SELECT DISTINCT toString(vin) FROM events WHERE event_id IN %(ids)s", event_ids))
    return {str(row[0]) for sql, ids in queries for row in store.rows(sql, {"ids": ids})}


def last_crossings(
    store: Store, moments: Sequence[MomentDefinition], keys: Sequence[ChannelKey]
) -> dict[tuple[str, int, int], tuple[int, int]]:
    """(vin, moment index, source) -> (last ms the fire condition held, last ms the re-arm one did), 0 for never."""
    out: dict[tuple[str, int, int], tuple[int, int]] = {}
    for lo in range(0, len(keys), _CHUNK):
        chunk = keys[lo : lo + _CHUNK]
        params = {
            "vins": sorted({k.vin for k in chunk}),
            "keys": [k.text for k in chunk],
            "before": [k.before_ms for k in chunk],
            "floor": min(k.before_ms for k in chunk) - LOOKBACK_MS,
        }
        signal_moments = [(i, m) for i, m in enumerate(moments) if m.event_id is None]
        if signal_moments:
            _signal_rows(store, signal_moments, params, out)
        event_moments = [(i, m) for i, m in enumerate(moments) if m.event_id is not None]
        if event_moments:
            _event_rows(store, event_moments, params, out)
    return out


def _ms(expr: str) -> str:
    return f"toInt64(toUnixTimestamp64Milli({expr}))"


def _before(column: str) -> str:
    # Per (table, vin, source) bound: a channel this batch does not carry reads all its history.
    table = "e" if column == "event_id" else "s"
    return (
        f"toUnixTimestamp64Milli(ts) < transform(concat('{table}:', toString(vin), ':', toString({column})),"
        " %(keys)s, %(before)s, toInt64(9223372036854775807))"
    )


def _signal_rows(store: Store, moments: list[tuple[int, MomentDefinition]], params: dict[str, Any], out: _Last) -> None:
    columns: list[str] = []
    sources: set[int] = set()
    for _, m in moments:
        assert m.fire is not None
        ids = ", ".join(str(s) for s in m.signal_ids)
        rearm = m.rearm.to_sql() if m.rearm is not None else "0"
        columns.append(f"{_ms(f'maxIf(ts, signal_id IN ({ids}) AND {m.fire.to_sql()})')}")
        columns.append(f"{_ms(f'maxIf(ts, signal_id IN ({ids}) AND {rearm})')}")
        sources.update(m.signal_ids)
    floor = "" if any(m.rearm is None for _, m in moments) else " AND ts >= fromUnixTimestamp64Milli(%(floor)s)"
    sql = (
        f"SELECT toString(vin), signal_id, {', '.join(columns)} FROM signals"
        f" WHERE vin IN %(vins)s AND signal_id IN ({', '.join(str(s) for s in sorted(sources))})"
        f" AND {_before('signal_id')}{floor} GROUP BY vin, signal_id"
    )
    for vin, sid, *last in store.rows(sql, params):
        for j, (i, m) in enumerate(moments):
            if int(sid) in m.signal_ids:
                out[(str(vin), i, int(sid))] = (int(last[2 * j]), int(last[2 * j + 1]))


def _event_rows(store: Store, moments: list[tuple[int, MomentDefinition]], params: dict[str, Any], out: _Last) -> None:
    ids = sorted({int(m.event_id) for _, m in moments if m.event_id is not None})
    sql = (
        f"SELECT toString(vin), event_id, {_ms('max(ts)')} FROM events"
        f" WHERE vin IN %(vins)s AND event_id IN ({', '.join(str(e) for e in ids)}) AND {_before('event_id')}"
        " GROUP BY vin, event_id"
    )
    for vin, eid, last in store.rows(sql, params):
        for i, m in moments:
            if m.event_id == int(eid):
                out[(str(vin), i, int(eid))] = (int(last), 0)  # an event never re-arms by a value


def owners_of(store: Store, vins: Sequence[str]) -> dict[str, list[tuple[int, str]]]:
    """vin -> [(valid_from ms, owner_id)] in time order."""
    out: dict[str, list[tuple[int, str]]] = {}
    for lo in range(0, len(vins), _CHUNK):
        rows = store.rows(
            f"SELECT toString(vin), {_ms('valid_from')}, owner_id FROM ownership FINAL"
            " WHERE vin IN %(vins)s ORDER BY vin, valid_from",
            {"vins": list(vins[lo : lo + _CHUNK])},
        )
        for vin, since, owner in rows:
            out.setdefault(str(vin), []).append((int(since), str(owner)))
    return out


def fired_history(
    store: Store, pairs: Sequence[tuple[str, str]], since_ms: int
) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """(owner, moment) -> [(at ms, message_id)] of the moments already in the outbox since `since_ms`."""
    out: dict[tuple[str, str], list[tuple[int, str]]] = {pair: [] for pair in pairs}
    owners = sorted({o for o, _ in pairs})
    moments = sorted({m for _, m in pairs})
    for lo in range(0, len(owners), _CHUNK):
        rows = store.rows(
            f"SELECT owner_id, tag, {_ms('at')}, message_id FROM tag_history"
            " WHERE action = 'fired' AND owner_id IN %(owners)s AND tag IN %(moments)s"
            " AND at >= fromUnixTimestamp64Milli(%(since)s)",
            {"owners": owners[lo : lo + _CHUNK], "moments": moments, "since": since_ms},
        )
        for owner, moment, at, message_id in rows:
            if (str(owner), str(moment)) in out:
                out[(str(owner), str(moment))].append((int(at), str(message_id)))
    return out
