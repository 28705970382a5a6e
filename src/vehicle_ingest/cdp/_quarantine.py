"""The CDP quarantine: changes a sink refused for good, held out of that sink's delivery order.

A quarantined change is skipped by `Outbox.pending` for its sink only (other
sinks still get it) until a person releases it; released, it is pending again
and, refused again, quarantined again. Rows live in `cdp_quarantine`
(schemas/clickhouse/0006_cdp_quarantine.sql): a release is a newer row with
`released = 1`, so every read is FINAL with `released = 0`.
Synchronous, like the outbox: it runs on the caller's store thread (in the gateway, the
deliverer's adds on the CDP thread, the release routes' lists and releases on the store thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vehicle_ingest.storage import Store

__all__ = ["HELD_FOR_SINK", "MAX_ANSWER_CHARS", "Quarantine", "QuarantinedChange"]

# The sink's answer is evidence for a person, not an archive: a Segment error
# body is a few hundred bytes, a misbehaving proxy may send an HTML page.
MAX_ANSWER_CHARS = 1000
# Message ids quarantined for %(sink)s: what Outbox.pending and Outbox.depth skip.
HELD_FOR_SINK = "SELECT message_id FROM cdp_quarantine FINAL WHERE sink = %(sink)s AND released = 0"
# Bounds the IN list of one lookup statement (max_query_size), as in the outbox.
_CHUNK = 5000
_COLUMNS = ["sink", "message_id", "status", "answer", "released"]


@dataclass(frozen=True, slots=True)
class QuarantinedChange:
    """One change a sink refused: what it was, and what the sink said."""

    message_id: str
    owner_id: str  # "" when the change itself is gone from tag_history (erased)
    tag: str
    action: str
    sink: str
    status: str
    answer: str
    at_ms: int  # when it was (last) quarantined, store clock

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Quarantine:
    """Add, list, count and release quarantined changes; every read is exact (FINAL)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, sink: str, message_id: str, status: str, answer: str) -> None:
        self._store.insert_rows("cdp_quarantine", _COLUMNS, [(sink, message_id, status, answer[:MAX_ANSWER_CHARS], 0)])

    def depth(self, sink: str) -> int:
        """How many changes `sink` holds in quarantine (exact)."""
        return int(self._store.rows(f"SELECT count() FROM ({HELD_FOR_SINK})", {"sink": sink})[0][0])

    def entries(self, sink: str | None = None, message_ids: Sequence[str] | None = None) -> list[QuarantinedChange]:
        """Quarantined changes (of one sink, or of some message ids, if given), oldest first."""
        where, params = _filter(sink, message_ids)
        rows = self._store.rows(
            "SELECT sink, message_id, status, answer, toInt64(toUnixTimestamp64Milli(updated_at))"
            f" FROM cdp_quarantine FINAL WHERE released = 0{where} ORDER BY updated_at, sink, message_id",
            params,
        )
        changes = self._changes({row[1] for row in rows})
        return [_entry(row, changes.get(row[1])) for row in rows]

    def release(self, message_ids: Sequence[str] | None, sink: str | None = None) -> list[QuarantinedChange]:
        """Make quarantined changes pending again: `message_ids` (None: every one), of `sink` if given.

        Returns what was released; ids that are not quarantined are left out.
        """
        if message_ids is not None and not message_ids:
            return []
        released = self.entries(sink, message_ids)
        rows = [(q.sink, q.message_id, q.status, q.answer, 1) for q in released]
        self._store.insert_rows("cdp_quarantine", _COLUMNS, rows)
        return released

    def _changes(self, message_ids: set[str]) -> dict[str, tuple[str, str, str]]:
        """owner, tag, action per message id, looked up in the outbox."""
        found: dict[str, tuple[str, str, str]] = {}
        ids = sorted(message_ids)
        for lo in range(0, len(ids), _CHUNK):
            for mid, owner, tag, action in self._store.rows(
                "SELECT message_id, owner_id, tag, action FROM tag_history FINAL WHERE message_id IN %(ids)s",
                {"ids": ids[lo : lo + _CHUNK]},
            ):
                found[mid] = (owner, tag, action)
        return found


def _filter(sink: str | None, message_ids: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    where = ""
    params: dict[str, Any] = {}
    if sink is not None:
        where += " AND sink = %(sink)s"
        params["sink"] = sink
    if message_ids is not None:
        # A release names a handful of ids by hand: one bound list is enough.
        where += " AND message_id IN %(ids)s"
        params["ids"] = list(message_ids)
    return where, params


def _entry(row: tuple[Any, ...], change: tuple[str, str, str] | None) -> QuarantinedChange:
    sink, message_id, status, answer, at_ms = row
    owner, tag, action = change or ("", "", "")
    return QuarantinedChange(message_id, owner, tag, action, sink, status, answer, int(at_ms))
