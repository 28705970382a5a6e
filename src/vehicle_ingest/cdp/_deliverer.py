"""Moves tag changes from the outbox to every sink: at-least-once, in order, with backoff and a quarantine.

A batch is marked delivered only after its sink accepted it. A crash or store
failure between the two re-sends the batch later under the same message ids,
which the CDP deduplicates: that is what makes delivery effectively exactly once.

A batch the sink refuses for its content (DeliveryError.refuses_content) is
split in halves, recursively: the halves it accepts are delivered and marked,
in order, and a change refused on its own goes to the quarantine with the
sink's answer, so one poison change never holds up the rest. Every other
failure (timeout, 5xx, 408, 429, no connection, refused credentials) leaves
the batch pending and is retried with backoff: nothing is quarantined then.

Every store call goes through `run_store`; the gateway gives the deliverer a thread and a
connection of its own, so a send never queues behind an ingest insert. The depth gauge costs
no statement on the way to a send: a round that drains the outbox has seen it empty (gauge 0),
and the two count statements run only at start, on request (`refresh_depth`) and after failed
rounds (the first at once, then at most every `recount_every_s`), never between a wake and a send.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vehicle_ingest.cdp._change import TagChange
from vehicle_ingest.cdp._outbox import Outbox
from vehicle_ingest.cdp._sink import Sink, observing_requests
from vehicle_ingest.errors import ConfigError, DeliveryError, VehicleIngestError
from vehicle_ingest.metrics import PREFIX

__all__ = ["CdpMetrics", "Deliverer", "RunStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_SEND_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RunStore(Protocol):
    """Runs a synchronous store call where its connection lives (the gateway: the CDP thread)."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


@dataclass(frozen=True)
class CdpMetrics:
    requests: Counter
    delivered: Counter
    quarantined: Counter
    depth: Gauge
    quarantine_depth: Gauge
    seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CdpMetrics:
        return cls(
            requests=Counter(
                f"{PREFIX}_cdp_requests",
                "Requests to CDP sinks by outcome: HTTP status, timeout, error (file: ok).",
                ("sink", "status"),
                registry=registry,
            ),
            delivered=Counter(
                f"{PREFIX}_cdp_changes_delivered",
                "Tag changes a sink accepted (retries counted again).",
                ("sink",),
                registry=registry,
            ),
            quarantined=Counter(
                f"{PREFIX}_cdp_changes_quarantined",
                "Tag changes a sink refused on their own, moved to the quarantine (again after each release).",
                ("sink",),
                registry=registry,
            ),
            depth=Gauge(
                f"{PREFIX}_cdp_outbox_depth",
                "Tag changes waiting for the sink: not delivered, not quarantined (as of the last round or recount).",
                ("sink",),
                registry=registry,
            ),
            quarantine_depth=Gauge(
                f"{PREFIX}_cdp_quarantine_depth",
                "Tag changes the sink refused, held in quarantine until released.",
                ("sink",),
                registry=registry,
            ),
            seconds=Histogram(
                f"{PREFIX}_cdp_delivery_seconds",
                "Time to send one batch to a sink, failures included.",
                ("sink",),
                buckets=_SEND_SECONDS,
                registry=registry,
            ),
        )

    def count_request(self, sink: str, status: str) -> None:
        self.requests.labels(sink=sink, status=status).inc()


class Deliverer:
    """Drains the outbox into each sink; each sink has its own progress, backoff and quarantine."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[Sink],
        registry: CollectorRegistry,
        run_store: RunStore,
        batch_size: int = 100,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 30.0,
        recount_every_s: float = 5.0,
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            # Delivery state is keyed by name: two sinks sharing one would each skip half the changes.
            raise ConfigError("cdp.url", f"two sinks have the same name {names}; add ?name=... to one URL")
        if batch_size < 1 or not 0 < backoff_min_s <= backoff_max_s:
            raise ConfigError("cdp", "need batch_size >= 1 and 0 < backoff_min_s <= backoff_max_s")
        self._outbox = outbox
        self._sinks = list(sinks)
        self._run_store = run_store
        self._batch_size = batch_size
        self._backoff = (backoff_min_s, backoff_max_s)
        self._recount_every_s = recount_every_s
        self._recounted_at = dict.fromkeys(names, -math.inf)  # time.monotonic() of each sink's last recount
        self._metrics = CdpMetrics.create(registry)
        # One event per sink: a wake-up consumed by one sink's task must not be lost to the others.
        self._wakes = {name: asyncio.Event() for name in names}
        for name in names:  # counters exist at 0 from the start, so alerts and rates see every sink
            self._metrics.delivered.labels(sink=name)
            self._metrics.quarantined.labels(sink=name)

    def wake(self) -> None:
        """Start a delivery round now (changes were enqueued or released) instead of at the next interval.

        A sink backing off after a failure keeps its backoff: waking it would hammer a CDP that is down.
        """
        for event in self._wakes.values():
            event.set()

    async def refresh_depth(self) -> None:
        """Set both depth gauges of every sink from exact store counts."""
        for sink in self._sinks:
            await self._refresh_sink(sink.name)

    async def deliver_once(self) -> int:
        """Drain every sink until nothing is pending or a send fails; returns changes delivered."""
        await self.refresh_depth()  # the gauges move by each batch from an exact start
        total = 0
        for sink in self._sinks:
            delivered, _ = await self._drain(sink)
            total += delivered
        await self.refresh_depth()
        return total

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Deliver every `interval_s` (or on `wake()`) until `stop` is set; after failures, back off per sink."""
        # Events bind to the loop that first waits on them: fresh ones for this loop.
        self._wakes = {name: asyncio.Event() for name in self._wakes}
        async with asyncio.TaskGroup() as group:
            for sink in self._sinks:
                group.create_task(self._run_sink(sink, stop, interval_s), name=f"cdp-deliver[{sink.name}]")

    async def _run_sink(self, sink: Sink, stop: asyncio.Event, interval_s: float) -> None:
        backoff = 0.0
        wake = self._wakes[sink.name]
        with suppress(VehicleIngestError):  # the store is down: the first round will say so
            await self._refresh_sink(sink.name)  # exact from the start, not only after a first (long) drain
        while not stop.is_set():
            wake.clear()  # before the round: changes enqueued during it wake the next one
            failure = await self._round(sink)
            backoff = self._next_backoff(backoff, failure)
            waits = [stop.wait()] if backoff else [stop.wait(), wake.wait()]
            await _first_of(waits, backoff or interval_s)

    async def _round(self, sink: Sink) -> Exception | None:
        """One drain of `sink`; returns what stopped it early, if anything.

        Drained, the outbox held nothing more for `sink` (its last batch was short), so the gauge
        is 0 without counting. Stopped early, the gauge misses what was enqueued meanwhile: recount
        after the failed send, before the backoff (no send waits for it), on the first failure and
        then at most every `recount_every_s` (a CDP outage must not become two counts per retry).
        """
        try:
            _, failure = await self._drain(sink)
        except VehicleIngestError as exc:  # the store failed: same treatment as a failed send
            log.warning("CDP sink %s: outbox unavailable (%s); will retry", sink.name, exc)
            return exc
        if failure is None:
            self._metrics.depth.labels(sink=sink.name).set(0)
            self._recounted_at[sink.name] = -math.inf  # the next failure recounts at once: 0 is stale from then on
        elif time.monotonic() - self._recounted_at[sink.name] >= self._recount_every_s:
            with suppress(VehicleIngestError):  # only a gauge: the next failed round recounts
                await self._refresh_sink(sink.name)
        return failure

    def _next_backoff(self, previous: float, failure: Exception | None) -> float:
        low, high = self._backoff
        if failure is None:
            return 0.0
        if isinstance(failure, DeliveryError) and failure.rejected:
            return high  # refused credentials will not pass in 0.2 s; don't hammer the CDP with them
        step = min(high, max(low, previous * 2))
        # Jitter: many gateways retrying one CDP after its outage should not arrive in lockstep.
        return step * (0.5 + random.random() / 2)

    async def _refresh_sink(self, name: str) -> None:
        self._recounted_at[name] = time.monotonic()
        depth = await self._run_store(self._outbox.depth, name)
        held = await self._run_store(self._outbox.quarantine.depth, name)
        self._metrics.depth.labels(sink=name).set(depth)
        self._metrics.quarantine_depth.labels(sink=name).set(held)

    async def _drain(self, sink: Sink) -> tuple[int, DeliveryError | None]:
        delivered = 0
        while True:
            batch = await self._run_store(self._outbox.pending, sink.name, self._batch_size)
            if not batch:
                return delivered, None
            accepted, failure = await self._deliver(sink, batch)
            delivered += accepted
            if failure is not None or len(batch) < self._batch_size:
                # Short: nothing more was pending when it was read; what was enqueued since woke the next round.
                return delivered, failure

    async def _deliver(self, sink: Sink, batch: list[TagChange]) -> tuple[int, DeliveryError | None]:
        """Send `batch`; if its content is refused, narrow the refusal down by halves, in order.

        Returns the changes delivered and the failure that stopped it (None: every change is
        delivered or quarantined). One poison change in 100 costs about 2 * log2(100) = 14 requests.
        """
        try:
            await self._send(sink, batch)
        except DeliveryError as exc:
            if not exc.refuses_content:
                _log_failure(sink.name, len(batch), exc)
                return 0, exc
            if len(batch) == 1:
                await self._quarantine(sink.name, batch[0], exc)
                return 0, None
            log.info("CDP sink %s refused a batch of %d (%s): splitting it", sink.name, len(batch), exc.status)
            half = len(batch) // 2
            first, failure = await self._deliver(sink, batch[:half])
            if failure is not None:  # the second half must not overtake the first
                return first, failure
            second, failure = await self._deliver(sink, batch[half:])
            return first + second, failure
        await self._run_store(self._outbox.mark_delivered, sink.name, [c.message_id for c in batch])
        self._metrics.delivered.labels(sink=sink.name).inc(len(batch))
        # Keeps the gauge exact between two rounds' recounts (these came from pending).
        self._metrics.depth.labels(sink=sink.name).dec(len(batch))
        return len(batch), None

    async def _quarantine(self, sink: str, change: TagChange, exc: DeliveryError) -> None:
        await self._run_store(self._outbox.quarantine.add, sink, change.message_id, exc.status, exc.detail)
        self._metrics.quarantined.labels(sink=sink).inc()
        self._metrics.depth.labels(sink=sink).dec()
        self._metrics.quarantine_depth.labels(sink=sink).inc()
        log.error(
            "CDP sink %s REFUSED change %s (owner %s, tag %s, %s) with %s: %s; quarantined, the rest keeps flowing."
            " Fix the payload or the sink, then: vehicle-ingest cdp release %s",
            sink,
            change.message_id,
            change.owner_id,
            change.tag,
            change.action,
            exc.status,
            exc.detail,
            change.message_id,
        )

    async def _send(self, sink: Sink, batch: list[TagChange]) -> None:
        started = time.perf_counter()
        try:
            with observing_requests(self._metrics.count_request):
                await sink.send(batch)
        finally:
            self._metrics.seconds.labels(sink=sink.name).observe(time.perf_counter() - started)


async def _first_of(waits: Sequence[Awaitable[Any]], timeout_s: float) -> None:
    """Return when the first of `waits` finishes or after `timeout_s`; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(sink: str, n: int, exc: DeliveryError) -> None:
    if exc.rejected:
        # Refused whatever the batch carries (credentials, URL): retried anyway (nothing is dropped
        # or quarantined), but a person has to fix the sink's configuration.
        log.error(
            "CDP sink %s REJECTED a batch of %d changes (%s): %s; retrying with maximum backoff,"
            " fix the sink configuration (write key, credentials, URL)",
            sink,
            n,
            exc.status,
            exc.detail,
        )
    else:
        log.warning(
            "CDP sink %s: batch of %d changes not delivered (%s): %s; will retry", sink, n, exc.status, exc.detail
        )
