"""The gateway's ingest loop: MQTT deliveries → batches → pipeline → ack and receipts.

Two threads do the store work, each on its own connection: the lookup thread prepares batch
N+1 (decode, validate, identity lookup) while the store thread commits batch N. N+1 commits
only after N committed and was acked, so N's identities, held as pending meanwhile, are stored
by the time N+1 relies on them. A store that cannot take a batch leaves it unacked and is
retried with backoff, the identity lookup redone first (part of the batch may be stored); when
the gateway is told to stop meanwhile it gives up after stop_timeout_s, unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vehicle_ingest.cdp import Outbox
from vehicle_ingest.errors import StoreError
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.mqtt_source import Delivery, MqttSource
from vehicle_ingest.gateway.receipt_sender import ReceiptSender
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.moments import MomentEngine
from vehicle_ingest.pipeline import Outcome, Pipeline, Prepared
from vehicle_ingest.receipts import ReceiptBook

__all__ = ["EXIT_GAVE_UP", "IngestHealth", "IngestLoop"]

log = logging.getLogger(__name__)

EXIT_GAVE_UP = 75  # EX_TEMPFAIL: stopped with a batch not stored (and so not acked)
_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 10.0
T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class IngestHealth:
    """What readiness and the memory task read about ingestion."""

    store_ok: bool = True
    last_progress: float = field(default_factory=time.monotonic)
    memory_used: bool = False  # set by batches (and reads); the memory task hands freed pages back


class _GaveUpError(Exception):
    """Stopping while the store keeps failing: leave the batch unacked for redelivery."""


class IngestLoop:
    def __init__(
        self,
        pipeline: Pipeline,
        source: MqttSource,
        receipts_out: ReceiptSender | None,
        config: GatewayConfig,
        metrics: Metrics,
        run_store: Runner,
        run_lookup: Runner,
        stopping: asyncio.Event,
        moments: MomentEngine | None = None,
        outbox: Outbox | None = None,
        outbox_changed: Callable[[], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._moments = moments
        self._outbox = outbox
        self._outbox_changed = outbox_changed
        self._source = source
        self._receipts_out = receipts_out
        self._config = config
        self._metrics = metrics
        self._run_store = run_store
        self._run_lookup = run_lookup
        self._stopping = stopping
        self.health = IngestHealth()
        self.receipts = ReceiptBook()

    async def run(self) -> int:
        """Ingest until stopped and drained; the exit code (0, or EXIT_GAVE_UP with a batch left unacked)."""
        committing: asyncio.Task[None] | None = None
        prepared: Prepared | None = None
        try:
            while True:
                if self._stopping.is_set():
                    self._source.stop_accepting()
                batch = await self._collect(self._source.queue)
                if not batch:
                    if self._stopping.is_set() and self._source.queue.empty():
                        if committing is not None:
                            await committing
                        return 0
                    continue
                prepared = await self._prepare(batch)
                if committing is not None:
                    await committing  # N acked before N+1 commits
                committing = asyncio.create_task(self._commit(batch, prepared), name="commit")
                prepared = None
        except _GaveUpError:
            return EXIT_GAVE_UP
        finally:
            if prepared is not None:
                self._pipeline.release(prepared)
            if committing is not None and not committing.done():
                committing.cancel()

    async def _collect(self, queue: asyncio.Queue[Delivery]) -> list[Delivery]:
        """Up to batch_max_messages / batch_max_bytes, waiting at most batch_linger_ms after the first."""
        c = self._config
        batch: list[Delivery] = []
        size = 0
        deadline = None
        while len(batch) < c.batch_max_messages and size < c.batch_max_bytes:
            timeout = 0.2 if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                # Under load the queue is rarely empty: take without a timer task per message.
                item = queue.get_nowait() if not queue.empty() else await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                if deadline is None:
                    break  # idle: let the caller check for stop
                continue
            batch.append(item)
            size += len(item.payload)
            if deadline is None:
                deadline = time.monotonic() + c.batch_linger_ms / 1000
        return batch

    async def _prepare(self, batch: list[Delivery]) -> Prepared:
        topics, payloads = [d.topic for d in batch], [d.payload for d in batch]
        received_ms = time.time_ns() // 1_000_000
        return await self._retrying(len(batch), self._run_lookup, self._pipeline.prepare, topics, payloads, received_ms)

    async def _commit(self, batch: list[Delivery], prepared: Prepared) -> None:
        """Commit, replanning after each failure, then ack and queue the receipts."""
        pipeline = self._pipeline
        delay = _RETRY_FIRST_S
        give_up_at: float | None = None
        while True:
            try:
                outcome, fired = await self._run_store(self._store_batch, prepared)
                if fired and self._outbox_changed is not None:
                    self._outbox_changed()  # on the loop: the deliverer's wake-up is an asyncio.Event
                break
            except StoreError as exc:
                give_up_at = await self._failed(exc, len(batch), delay, give_up_at)
                delay = min(delay * 2, _RETRY_MAX_S)
            prepared = await self._retrying(len(batch), self._run_lookup, pipeline.replan, prepared)
        self.health.store_ok = True
        if self._config.receipts:
            self.receipts.add(outcome.verdicts)  # the insert returned: these are settled
        self._source.settle(batch)
        self.health.last_progress = time.monotonic()
        self.health.memory_used = True
        if outcome.rejected:
            log.info("rejected %s", dict(outcome.rejected))

    def _store_batch(self, prepared: Prepared) -> tuple[Outcome, int]:
        """The insert, then the batch's moments, in one trip to the store thread."""
        outcome = self._pipeline.commit(prepared)
        return outcome, self._emit_moments(prepared)

    def _emit_moments(self, prepared: Prepared) -> int:
        """After the insert returned, before the ack: the batch's moments into the outbox (store thread).

        A failure raises StoreError: the batch is replanned (it is all duplicates now) and committed
        again, and its moments decided again from the same state, so the retry writes the same ids.
        """
        if self._moments is None or self._outbox is None:
            return 0
        evaluation = self._moments.evaluate(prepared.decoded, prepared.plan)
        if evaluation.changes:
            self._outbox.enqueue(evaluation.changes)
        self._moments.commit(evaluation)
        return len(evaluation.changes)

    async def _retrying(self, n: int, runner: Runner, fn: Callable[..., T], *args: Any) -> T:
        delay = _RETRY_FIRST_S
        give_up_at: float | None = None
        while True:
            try:
                result: T = await runner(fn, *args)
                return result
            except StoreError as exc:
                give_up_at = await self._failed(exc, n, delay, give_up_at)
                delay = min(delay * 2, _RETRY_MAX_S)

    async def _failed(self, exc: StoreError, n: int, delay: float, give_up_at: float | None) -> float | None:
        """Count and log a failure, then wait `delay`; raises _GaveUpError once stopping has waited long enough."""
        self.health.store_ok = False
        self._metrics.store_errors.inc()
        log.error("store failed, batch not acked, retrying in %.1fs: %s", delay, exc)
        if self._stopping.is_set():
            give_up_at = give_up_at or time.monotonic() + self._config.stop_timeout_s
            if time.monotonic() >= give_up_at:
                log.error("stopping with %d messages not stored: they stay unacked for redelivery", n)
                raise _GaveUpError from exc
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        return give_up_at

    async def receipts_loop(self) -> None:
        """Every receipt_interval_ms, one receipt per VIN with settled messages (the last round: `publish_receipts`
        when the gateway stops)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._config.receipt_interval_ms / 1000)
            self.publish_receipts()

    def publish_receipts(self) -> None:
        metrics, out = self._metrics, self._receipts_out
        if out is None:
            return
        receipts = list(self.receipts.drain())
        if not receipts:
            return
        dropped = out.publish_many(receipts)
        metrics.receipts.inc(len(receipts) - dropped)
        metrics.receipt_bytes.inc(sum(len(p) for _, p in receipts[: len(receipts) - dropped]))
        if dropped:
            metrics.receipts_dropped.inc(dropped)
