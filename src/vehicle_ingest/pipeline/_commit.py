"""Commit stage: the planned rows into their tables, rejected messages into dead letters, derived aggregates.

Each table gets the batch's rows in one insert (one part, one atomic write: a message's rows
appear in a table all at once or not at all). CAN values no mapping sends to the catalog go
first, then events, then signals. The per-batch aggregates of `latest_signals` and
`daily_activity` are written for every accepted message, new or redelivered: their states
(argMax, min, max, uniqExact) are idempotent, so a redelivery after a crash between the insert
and them repairs what the crash left out.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from vehicle_ingest.codec import Status
from vehicle_ingest.pipeline._aggregates import AggregateIds, aggregates_numba
from vehicle_ingest.pipeline._batch import Decoded, reason_labels
from vehicle_ingest.pipeline._identify import Plan
from vehicle_ingest.pipeline._outcome import Outcome, rejected_tally
from vehicle_ingest.receipts import Verdicts
from vehicle_ingest.storage import CanSignalRows, DeadLetterRows, EventRows, SignalRows, Store

__all__ = ["Raw", "commit"]


@dataclass(frozen=True, slots=True)
class Raw:
    """The batch as it arrived: what dead letters keep."""

    topics: list[str]
    payloads: list[bytes]


def commit(store: Store, raw: Raw, decoded: Decoded, plan: Plan, ids: AggregateIds, dead_letter_bytes: int) -> Outcome:
    """Write `plan` to `store`; returns once every insert returned (the caller may ack then)."""
    _dead_letters(store, raw, decoded, plan, dead_letter_bytes)
    written = _insert(store, decoded, plan)
    store.insert_aggregates(*aggregates_numba(decoded, plan.vins, plan.vin_index, plan.accepted, ids))
    returned_ms = time.time_ns() // 1_000_000
    accepted = plan.accepted
    return Outcome(
        stored=int(plan.fresh.sum()),
        duplicates=int((accepted & ~plan.fresh).sum()),
        samples=written["signals"],
        events=written["events"],
        can_values=written["can_signals"],
        rejected=rejected_tally(plan.reason),
        verdicts=_verdicts(decoded, plan),
        lag_ms=returned_ms - decoded.messages.ts_max[plan.fresh],
    )


def _insert(store: Store, decoded: Decoded, plan: Plan) -> dict[str, int]:
    m, vins, vin_index = decoded.messages, plan.vins, plan.vin_index
    at = decoded.received_ms
    c = decoded.can
    keep = plan.need["can_signals"][c.msg]
    msg = c.msg[keep]
    store.insert_can_signals(
        CanSignalRows(
            vins,
            vin_index[msg],
            m.seq[msg],
            c.names,
            c.name[keep],
            c.ts[keep],
            c.value[keep],
            at,
            c.integer[keep],
            c.is_integer[keep],
        )
    )
    written = {"can_signals": len(msg)}
    e = decoded.events
    keep = plan.need["events"][e.msg]
    msg = e.msg[keep]
    store.insert_events(
        EventRows(vins, vin_index[msg], m.seq[msg], e.event_id[keep], e.ts[keep], e.value[keep], e.text[keep], at)
    )
    written["events"] = len(msg)
    s = decoded.signals
    keep = plan.need["signals"][s.msg]
    msg = s.msg[keep]
    store.insert_signals(SignalRows(vins, vin_index[msg], m.seq[msg], s.signal_id[keep], s.ts[keep], s.value[keep], at))
    written["signals"] = len(msg)
    return written


def _dead_letters(store: Store, raw: Raw, decoded: Decoded, plan: Plan, cap: int) -> None:
    bad = np.flatnonzero(~plan.accepted)
    if len(bad) == 0:
        return
    m = decoded.messages
    vin = np.where(m.vin[bad] != b"", m.vin[bad], decoded.topics.vin[bad])
    store.insert_dead_letters(
        DeadLetterRows(
            topic=[raw.topics[i] for i in bad],
            vin=[v.decode("ascii", "replace") for v in vin.tolist()],
            seq=m.seq[bad],
            reason=reason_labels(plan.reason[bad]).tolist(),
            error_offset=m.error_offset[bad],
            payload_size=np.array([len(raw.payloads[i]) for i in bad], dtype=np.uint32),
            payload_hash=np.array([_payload_hash(raw.payloads[i]) for i in bad], dtype=np.uint64),
            payload=[raw.payloads[i][:cap] for i in bad],
            received_at_ms=decoded.received_ms,
        )
    )


def _payload_hash(payload: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little")


def _verdicts(decoded: Decoded, plan: Plan) -> Verdicts:
    """Receipts cover messages whose header was read whole (the decoder said OK or EMPTY): their seq is
    known. A message the decoder could not read gets none; it is a dead letter for a person to look at."""
    m = decoded.messages
    rows = np.flatnonzero((m.status == Status.OK) | (m.status == Status.EMPTY))
    return Verdicts(decoded.topics.vin[rows], m.seq[rows], reason_labels(plan.reason[rows]))
