"""The persisted outbox: tag changes in ClickHouse and, per sink, which of them were delivered or quarantined.

Synchronous on purpose: it runs on the caller's store thread. The gateway has two
outboxes on the same tables: the store thread's enqueues (moments before their
batch's ack, tag runs), the CDP thread's, on its own connection, delivers. Message
content only ever travels as bound parameters, never formatted into SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from vehicle_ingest.cdp._change import TagChange
from vehicle_ingest.cdp._quarantine import HELD_FOR_SINK, Quarantine
from vehicle_ingest.storage import Store

__all__ = ["Outbox"]

# Bounds the IN list of one lookup statement (max_query_size).
_CHUNK = 5000

_SELECT = (
    "SELECT message_id, owner_id, tag, action, evidence, traits, toInt64(toUnixTimestamp64Milli(at)), transition,"
    " holdout"
    " FROM tag_history FINAL"
)
# In the order the changes were enqueued (the store's clock), then per pair by
# transition: an owner's "removed" never overtakes the "added" before it.
_ORDER = " ORDER BY enqueued_at, owner_id, tag, transition, message_id"
# Duplicate rows in cdp_deliveries (a retried mark) do not matter to NOT IN.
_UNDELIVERED = " WHERE message_id NOT IN (SELECT message_id FROM cdp_deliveries WHERE sink = %(sink)s)"
# Pending: neither delivered nor held in quarantine for this sink (other sinks still get it).
_PENDING = _UNDELIVERED + f" AND message_id NOT IN ({HELD_FOR_SINK})"


class Outbox:
    """Tag changes waiting to reach each sink; idempotent on message_id."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.quarantine = Quarantine(store)

    def enqueue(self, changes: Sequence[TagChange]) -> None:
        """Persist changes; a message_id already stored keeps its first content."""
        unique: dict[str, TagChange] = {}
        for change in changes:
            unique.setdefault(change.message_id, change)
        for chunk in _chunks(list(unique.values())):
            # Keeping the first copy means every retry sends identical content
            # under one messageId, even if a recomputation changed `at_ms`.
            known = self._stored_ids([c.message_id for c in chunk])
            fresh = [_history_row(c) for c in chunk if c.message_id not in known]
            self._store.insert_rows("tag_history", _HISTORY_COLUMNS, fresh)

    def pending(self, sink: str, limit: int) -> list[TagChange]:
        """Up to `limit` changes not yet delivered to `sink` nor quarantined for it, oldest first, in a stable order."""
        rows = self._store.rows(_SELECT + _PENDING + _ORDER + " LIMIT %(limit)s", {"sink": sink, "limit": limit})
        return [_change(row) for row in rows]

    def mark_delivered(self, sink: str, message_ids: Sequence[str]) -> None:
        for chunk in _chunks(list(dict.fromkeys(message_ids))):
            self._store.insert_rows("cdp_deliveries", ["sink", "message_id"], [(sink, mid) for mid in chunk])

    def depth(self, sink: str) -> int:
        """How many changes wait for `sink` (exact): not delivered, not quarantined (see `quarantine.depth`)."""
        return int(self._store.rows("SELECT count() FROM tag_history FINAL" + _PENDING, {"sink": sink})[0][0])

    def history(self, owner_id: str | None = None) -> list[TagChange]:
        """Every stored change (of one owner, if given), oldest first."""
        if owner_id is None:
            return [_change(r) for r in self._store.rows(_SELECT + _ORDER)]
        rows = self._store.rows(_SELECT + " WHERE owner_id = %(owner)s" + _ORDER, {"owner": owner_id})
        return [_change(r) for r in rows]

    def _stored_ids(self, message_ids: list[str]) -> set[str]:
        rows = self._store.rows("SELECT message_id FROM tag_history WHERE message_id IN %(ids)s", {"ids": message_ids})
        return {row[0] for row in rows}


_HISTORY_COLUMNS = ["message_id", "owner_id", "tag", "action", "evidence", "traits", "at", "transition", "holdout"]


def _history_row(change: TagChange) -> tuple[str, str, str, str, str, str, datetime, int, int]:
    return (
        change.message_id,
        change.owner_id,
        change.tag,
        change.action,
        _dumps(change.evidence),
        _dumps(change.traits),
        datetime.fromtimestamp(change.at_ms / 1000, tz=UTC),
        change.transition,
        int(change.holdout),
    )


def _change(row: tuple[Any, ...]) -> TagChange:
    message_id, owner_id, tag, action, evidence, traits, at_ms, transition, holdout = row
    return TagChange(
        message_id,
        owner_id,
        tag,
        action,
        json.loads(evidence),
        json.loads(traits),
        int(at_ms),
        int(transition),
        bool(holdout),
    )


def _dumps(value: dict[str, Any]) -> str:
    # NaN/Infinity are not JSON: refuse them here, not at a CDP that would
    # reject the batch forever.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
