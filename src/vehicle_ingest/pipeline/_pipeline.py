"""The ingest pipeline: decode → validate → identify → commit, for signals, events and CAN alike.

`prepare` runs the first three stages and only reads the store (its identity lookup can use a
connection of its own); `commit` writes. The gateway prepares batch N+1 while batch N commits:
N's identities are held as pending, so N+1 treats them as stored, and N+1 commits only after N
succeeded. A commit that fails because the store is unavailable is retried by the caller after
`replan` (the lookup is redone: an insert that succeeded but whose answer was lost is not written
twice). A commit the store refuses for the batch's content is narrowed down by halves to the
messages it refuses, which are dead-lettered whole as `store_rejected`; the rest is stored.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace
from time import perf_counter

import numpy as np

from vehicle_ingest.can.models import CanDecoder
from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.codec import MAX_PAYLOAD_BYTES, DecodedBatch
from vehicle_ingest.errors import StoreRejectedError
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline._aggregates import AggregateIds
from vehicle_ingest.pipeline._batch import Decoded
from vehicle_ingest.pipeline._commit import Raw, commit
from vehicle_ingest.pipeline._decode import decode_batch
from vehicle_ingest.pipeline._identify import IdentityLookup, Key, PendingIdentities, Plan, identify
from vehicle_ingest.pipeline._outcome import Outcome, record
from vehicle_ingest.storage import Store
from vehicle_ingest.validate import Reason, SkewPolicy, validate

__all__ = ["Pipeline", "PipelinePolicy", "Prepared"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelinePolicy:
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    skew: SkewPolicy = field(default_factory=SkewPolicy)
    dead_letter_bytes: int = 4096  # payload prefix kept per dead letter (store_rejected keeps all of it)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch decoded, validated and planned; the identities it writes are held as pending until it commits."""

    batch_id: int
    raw: Raw
    decoded: Decoded
    validated: np.ndarray  # Reason per message from validation alone (the plan adds seq_reused)
    plan: Plan

    def __len__(self) -> int:
        return len(self.raw.topics)


class Pipeline:
    """One ingest path for every payload kind; holds only the identities of batches on their way.

    Thread use: `prepare` and `replan` on one thread (the lookup's), `commit` on another (the
    store's), or all on one. A commit narrowing down a refused batch looks identities up on the
    store's own connection.
    """

    def __init__(
        self,
        store: Store,
        signals: SignalCatalog,
        events: EventCatalog,
        metrics: Metrics,
        policy: PipelinePolicy | None = None,
        can: CanDecoder | None = None,
        lookup: IdentityLookup | None = None,
    ) -> None:
        self._store = store
        self._lookup = lookup or store
        self._signals, self._events = signals, events
        self._metrics = metrics
        self._policy = policy or PipelinePolicy()
        self._can = can or CanDecoder([])  # without models every CAN message is can_model_unknown
        self._ids = AggregateIds.of(signals)
        self._batch_ids = itertools.count(1)
        self.pending = PendingIdentities()
        self._dropped: set[Key] = set()  # held by a batch, then not stored after all (refused by the store)

    def ingest(self, topics: list[str], payloads: list[bytes], received_ms: int) -> Outcome:
        """Every stage in turn (tests, tools); the gateway calls prepare and commit itself. A batch that fails
        is forgotten: calling `ingest` again with it retries it."""
        prepared = self.prepare(topics, payloads, received_ms)
        try:
            return self.commit(prepared)
        except BaseException:
            self.release(prepared)
            raise

    def prepare(self, topics: list[str], payloads: list[bytes], received_ms: int) -> Prepared:
        raw = Raw(topics, payloads)
        decoded, validated = self._decoded(raw, received_ms)
        batch_id = next(self._batch_ids)
        plan = self._identify(decoded, validated, batch_id, self._lookup)
        self._hold(batch_id, decoded, plan)
        return Prepared(batch_id, raw, decoded, validated, plan)

    def replan(self, prepared: Prepared) -> Prepared:
        """The identity stage again: after a failed commit (part of it may be stored now), or when a
        batch it relied on was not stored after all."""
        plan = self._identify(prepared.decoded, prepared.validated, prepared.batch_id, self._lookup)
        self._hold(prepared.batch_id, prepared.decoded, plan)
        return replace(prepared, plan=plan)

    def release(self, prepared: Prepared) -> None:
        """Forget a batch that will not be committed (the gateway stops with it unacked)."""
        self.pending.release(prepared.batch_id)
        self._forget_dropped()

    def commit(self, prepared: Prepared) -> Outcome:
        """Write a prepared batch. Raises StoreUnavailableError (retry after `replan`); a refusal of its
        content is handled here, never raised."""
        if prepared.plan.relied & self._dropped:
            prepared = self.replan(prepared)
        started = perf_counter()
        try:
            outcome = commit(self._store, prepared.raw, prepared.decoded, prepared.plan, self._ids, self._cap)
        except StoreRejectedError as exc:
            log.error("the store refused a batch of %d messages (%s): narrowing it down", len(prepared), exc)
            outcome = self._narrowed(prepared, 0, len(prepared))
        else:
            self._metrics.insert_seconds.observe(perf_counter() - started)
            record(outcome, self._metrics, len(prepared))
        self.release(prepared)
        return outcome

    @property
    def _cap(self) -> int:
        return self._policy.dead_letter_bytes

    def _decoded(self, raw: Raw, received_ms: int) -> tuple[Decoded, np.ndarray]:
        started = perf_counter()
        p = self._policy
        decoded = decode_batch(raw.topics, raw.payloads, received_ms, p.max_payload_bytes, self._can, self._metrics)
        batch = DecodedBatch(decoded.messages, decoded.signals, decoded.events)
        reason = validate(decoded.topics, batch, self._signals, self._events, received_ms, p.skew)
        reason[(reason == Reason.OK) & decoded.can_model_unknown] = Reason.CAN_MODEL_UNKNOWN
        self._metrics.decode_seconds.observe(perf_counter() - started)
        return decoded, reason

    def _identify(self, decoded: Decoded, validated: np.ndarray, batch_id: int, lookup: IdentityLookup) -> Plan:
        started = perf_counter()
        plan = identify(decoded, validated, lookup, self.pending, batch_id)
        self._metrics.lookup_seconds.observe(perf_counter() - started)
        return plan

    def _hold(self, batch_id: int, decoded: Decoded, plan: Plan) -> None:
        writes = plan.fresh | np.any([plan.need[t] for t in plan.need], axis=0)
        counts = plan.counts
        rows = [
            tuple((int(counts.count[t][i]), int(counts.ts_min[t][i])) for t in plan.need)
            for i in np.flatnonzero(writes).tolist()
        ]
        self.pending.hold(batch_id, plan.keys(writes, decoded), rows)

    def _forget_dropped(self) -> None:
        """Once no batch is on its way, none can have relied on a dropped identity."""
        if not len(self.pending):
            self._dropped.clear()

    def _narrowed(self, prepared: Prepared, lo: int, hi: int) -> Outcome:
        """Messages lo..hi of a refused batch, again: the store takes them, or each half is tried alone,
        down to single messages it refuses, dead-lettered whole. The batch keeps its holds meanwhile,
        so no other batch plans to write what a part of it still may."""
        raw = Raw(prepared.raw.topics[lo:hi], prepared.raw.payloads[lo:hi])
        decoded, validated = self._decoded(raw, prepared.decoded.received_ms)
        plan = self._identify(decoded, validated, prepared.batch_id, self._store)  # the store thread's connection
        try:
            outcome = commit(self._store, raw, decoded, plan, self._ids, self._cap)
        except StoreRejectedError as exc:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                return self._narrowed(prepared, lo, mid).add(self._narrowed(prepared, mid, hi))
            outcome = self._store_rejected(raw, decoded, plan, exc)
        record(outcome, self._metrics, hi - lo)
        return outcome

    def _store_rejected(self, raw: Raw, decoded: Decoded, plan: Plan, exc: StoreRejectedError) -> Outcome:
        self._dropped.update(plan.keys(plan.accepted, decoded))
        n = len(raw.topics)
        refused = replace(
            plan,
            reason=np.where(plan.accepted, Reason.STORE_REJECTED, plan.reason).astype(np.uint8),
            fresh=np.zeros(n, dtype=bool),
            need={t: np.zeros(n, dtype=bool) for t in plan.need},
        )
        log.error("the store refuses message %s: dead-lettered whole as store_rejected (%s)", raw.topics[0], exc)
        return commit(self._store, raw, decoded, refused, self._ids, self._policy.max_payload_bytes)
