"""Ingest stage: a batch of raw MQTT messages in, stored rows out.

decode → validate → drop identities already stored → insert. Idempotent:
running `ingest` again on the same messages (a retry after a store error, or
a redelivery after a crash) stores nothing twice, because the identity
lookup runs before every insert. The caller acks the broker only after
`ingest` returns.
"""

from __future__ import annotations

import hashlib
from collections import Counter as Tally
from dataclasses import dataclass, field
from time import perf_counter, time_ns

import numpy as np

from vehicle_ingest.can.models import CanDecoder
from vehicle_ingest.can.stage import CanStage, is_can_payload
from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.codec import MAX_PAYLOAD_BYTES, DecodedBatch, Status, decode
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.receipts import Verdicts
from vehicle_ingest.storage import DeadLetterRows, EventRows, SignalRows, Store
from vehicle_ingest.validate import Reason, SkewPolicy, TopicColumns, parse_topics, validate

__all__ = ["IngestOutcome", "IngestPolicy", "Ingestor"]


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    skew: SkewPolicy = field(default_factory=SkewPolicy)
    dead_letter_bytes: int = 4096  # payload prefix kept per dead letter


@dataclass(slots=True)
class IngestOutcome:
    stored: int = 0
    duplicates: int = 0
    samples: int = 0
    events: int = 0
    rejected: Tally[str] = field(default_factory=Tally)
    verdicts: Verdicts = field(default_factory=Verdicts.empty)  # what the head units' receipts say

    def add(self, other: IngestOutcome) -> IngestOutcome:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.samples += other.samples
        self.events += other.events
        self.rejected += other.rejected
        self.verdicts = self.verdicts + other.verdicts
        return self


_LABELS = np.array(["" if r == Reason.OK else r.label for r in Reason], dtype=object)
_LABEL_OF = np.zeros(max(Reason) + 1, dtype=np.int64)
_LABEL_OF[[int(r) for r in Reason]] = np.arange(len(Reason))


def _verdicts(topics: TopicColumns, batch: DecodedBatch, reason: np.ndarray) -> Verdicts:
    """Receipts cover messages whose header was read whole (the decoder said OK or EMPTY): their seq is
    known. A message the decoder could not read gets none; it is a dead letter for a person to look at."""
    m = batch.messages
    rows = np.flatnonzero((m.status == Status.OK) | (m.status == Status.EMPTY))
    return Verdicts(topics.vin[rows], m.seq[rows], _LABELS[_LABEL_OF[reason[rows]]])


@dataclass(frozen=True, slots=True)
class _Identities:
    vins: list[str]  # distinct VINs of the batch
    vin_index: np.ndarray  # int32 per message
    first: np.ndarray  # bool: first copy of its (vin, seq) in this batch


def _identities(batch: DecodedBatch, reason: np.ndarray) -> _Identities:
    """Distinct VINs, and the first accepted copy of each (vin, seq) in the batch.

    Only accepted messages compete for "first copy": a rejected message
    (say, a VIN that does not match its topic) must never shadow a valid
    one. A later copy with other content is a reused sequence number.
    """
    m = batch.messages
    distinct, vin_index = np.unique(m.vin, return_inverse=True)
    ok = np.flatnonzero(reason == Reason.OK)
    keys = np.empty(len(ok), dtype=[("v", np.int64), ("s", np.uint64)])
    keys["v"], keys["s"] = vin_index[ok], m.seq[ok]
    _, first_pos, inverse = np.unique(keys, return_index=True, return_inverse=True)
    first = np.zeros(len(m), dtype=bool)
    first[ok[first_pos]] = True
    original = ok[first_pos][inverse.reshape(-1)]
    conflict = (m.ts_min[ok] != m.ts_min[original]) | (m.n_items[ok] != m.n_items[original])
    reason[ok[conflict]] = Reason.SEQ_REUSED
    return _Identities([v.decode("ascii", "replace") for v in distinct], vin_index.astype(np.int32), first)


def _payload_hash(payload: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little")


class Ingestor:
    """Turns batches of (topic, payload) into stored rows; holds no per-batch state."""

    def __init__(
        self,
        store: Store,
        signals: SignalCatalog,
        events: EventCatalog,
        metrics: Metrics,
        policy: IngestPolicy | None = None,
        can: CanDecoder | None = None,
    ) -> None:
        self._store = store
        self._signals = signals
        self._events = events
        self._metrics = metrics
        self._policy = policy or IngestPolicy()
        # Without configured models every CAN message is rejected as can_model_unknown.
        self._can = CanStage(store, can or CanDecoder([]), signals, events, metrics)

    def ingest(self, topics: list[str], payloads: list[bytes], now_ms: int) -> IngestOutcome:
        can = is_can_payload(payloads)
        if not can.any():
            return self._ingest_samples(topics, payloads, now_ms)
        part = [np.flatnonzero(~can).tolist(), np.flatnonzero(can).tolist()]
        outcome = self._ingest_samples([topics[i] for i in part[0]], [payloads[i] for i in part[0]], now_ms)
        return outcome.add(self._ingest_can([topics[i] for i in part[1]], [payloads[i] for i in part[1]], now_ms))

    def _ingest_can(self, topics: list[str], payloads: list[bytes], now_ms: int) -> IngestOutcome:
        """CAN messages (kind 3): see `vehicle_ingest.can.stage` for how two tables stay exactly-once."""
        started = perf_counter()
        p = self._policy
        batch, values, topic_cols, reason = self._can.prepare(topics, payloads, now_ms, p.max_payload_bytes, p.skew)
        ids = _identities(batch, reason)
        decoded_at = perf_counter()
        self._metrics.decode_seconds.observe(decoded_at - started)
        plan = self._can.plan(batch, values, ids, reason)
        self._store_rejected(topics, payloads, batch, topic_cols, reason, now_ms)
        samples, _ = self._can.insert(batch, values, ids, plan, now_ms)
        self._metrics.insert_seconds.observe(perf_counter() - decoded_at)
        fresh = plan.fresh & (reason == Reason.OK)
        outcome = IngestOutcome(stored=int(fresh.sum()), samples=samples, verdicts=_verdicts(topic_cols, batch, reason))
        outcome.duplicates = int(((reason == Reason.OK) & ~fresh).sum())
        outcome.rejected = Tally(Reason(int(r)).label for r in reason[reason != Reason.OK])
        self._count(outcome, batch, fresh, now_ms)
        return outcome

    def _ingest_samples(self, topics: list[str], payloads: list[bytes], now_ms: int) -> IngestOutcome:
        started = perf_counter()
        batch = decode(payloads, self._policy.max_payload_bytes)
        topic_cols = parse_topics(topics)
        reason = validate(topic_cols, batch, self._signals, self._events, now_ms, self._policy.skew)
        ids = _identities(batch, reason)
        decoded_at = perf_counter()
        self._metrics.decode_seconds.observe(decoded_at - started)

        fresh = self._drop_stored(batch, ids, reason)
        self._store_rejected(topics, payloads, batch, topic_cols, reason, now_ms)
        outcome = self._store_accepted(batch, ids, fresh, now_ms)
        outcome.verdicts = _verdicts(topic_cols, batch, reason)
        self._metrics.insert_seconds.observe(perf_counter() - decoded_at)
        outcome.duplicates = int(((reason == Reason.OK) & ~fresh).sum())
        outcome.rejected = Tally(Reason(int(r)).label for r in reason[reason != Reason.OK])
        # Lag runs to the moment the insert returned (queryable), not to `now_ms` (the batch's receive time).
        self._count(outcome, batch, fresh, time_ns() // 1_000_000)
        return outcome

    def _drop_stored(self, batch: DecodedBatch, ids: _Identities, reason: np.ndarray) -> np.ndarray:
        """Mask of accepted messages not yet in the store; marks reused sequence numbers."""
        candidate = (reason == Reason.OK) & ids.first
        idx = np.flatnonzero(candidate)
        m = batch.messages
        known = self._store.known_messages(ids.vins, ids.vin_index[idx], m.seq[idx])
        # Same identity, different content: the head unit reused a sequence number.
        conflict = known.found & ((known.ts_min != m.ts_min[idx]) | (known.n_items != m.n_items[idx]))
        reason[idx[conflict]] = Reason.SEQ_REUSED
        fresh = np.zeros(len(m), dtype=bool)
        fresh[idx[~known.found]] = True
        return fresh

    def _store_accepted(self, batch: DecodedBatch, ids: _Identities, fresh: np.ndarray, now_ms: int) -> IngestOutcome:
        s, e, m = batch.samples, batch.events, batch.messages
        keep_s, keep_e = fresh[s.msg], fresh[e.msg]
        sample_msg, event_msg = s.msg[keep_s], e.msg[keep_e]
        self._store.insert_signals(
            SignalRows(
                ids.vins,
                ids.vin_index[sample_msg],
                m.seq[sample_msg],
                s.signal_id[keep_s],
                s.ts[keep_s],
                s.value[keep_s],
                now_ms,
            )
        )
        self._store.insert_events(
            EventRows(
                ids.vins,
                ids.vin_index[event_msg],
                m.seq[event_msg],
                e.event_id[keep_e],
                e.ts[keep_e],
                e.value[keep_e],
                e.text[keep_e],
                now_ms,
            )
        )
        return IngestOutcome(stored=int(fresh.sum()), samples=len(sample_msg), events=len(event_msg))

    def _store_rejected(
        self,
        topics: list[str],
        payloads: list[bytes],
        batch: DecodedBatch,
        topic_cols: TopicColumns,
        reason: np.ndarray,
        now_ms: int,
    ) -> None:
        bad = np.flatnonzero(reason != Reason.OK)
        if len(bad) == 0:
            return
        m = batch.messages
        vin = np.where(m.vin[bad] != b"", m.vin[bad], topic_cols.vin[bad])
        cap = self._policy.dead_letter_bytes
        self._store.insert_dead_letters(
            DeadLetterRows(
                topic=[topics[i] for i in bad],
                vin=[v.decode("ascii", "replace") for v in vin],
                seq=m.seq[bad],
                reason=[Reason(int(r)).label for r in reason[bad]],
                error_offset=m.error_offset[bad],
                payload_size=np.array([len(payloads[i]) for i in bad], dtype=np.uint32),
                payload_hash=np.array([_payload_hash(payloads[i]) for i in bad], dtype=np.uint64),
                payload=[payloads[i][:cap] for i in bad],
                received_at_ms=now_ms,
            )
        )

    def _count(self, outcome: IngestOutcome, batch: DecodedBatch, fresh: np.ndarray, stored_ms: int) -> None:
        mt = self._metrics
        mt.stored.inc(outcome.stored)
        mt.duplicates.inc(outcome.duplicates)
        mt.samples_stored.inc(outcome.samples)
        mt.events_stored.inc(outcome.events)
        for label, count in outcome.rejected.items():
            mt.rejected.labels(label).inc(count)
            if label in ("invalid_vin", "vin_mismatch"):
                mt.identity_violations.labels(label).inc(count)
        mt.batch_messages.observe(len(batch.messages))
        mt.batch_samples.observe(outcome.samples)
        for lag_ms in (stored_ms - batch.messages.ts_max[fresh]).tolist():
            mt.lag_seconds.observe(max(lag_ms, 0) / 1000.0)
