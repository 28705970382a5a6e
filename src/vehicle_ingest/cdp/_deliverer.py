"""Moves tag changes from the outbox to every sink: at-least-once, in order, with backoff.

A batch is marked delivered only after its sink accepted it. A crash or store
failure between the two re-sends the batch later under the same message ids,
which the CDP deduplicates: that is what makes delivery effectively exactly once.
"""

from __future__ import annotations

import asyncio
import logging
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
    """Runs a synchronous store call where the store lives (the gateway: its one store thread)."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


@dataclass(frozen=True)
class CdpMetrics:
    requests: Counter
    delivered: Counter
    depth: Gauge
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
            depth=Gauge(
                f"{PREFIX}_cdp_outbox_depth", "Tag changes not yet delivered to the sink.", ("sink",), registry=registry
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
    """Drains the outbox into each sink; each sink has its own progress and backoff."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[Sink],
        registry: CollectorRegistry,
        run_store: RunStore,
        batch_size: int = 100,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 30.0,
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
        self._metrics = CdpMetrics.create(registry)

    async def deliver_once(self) -> int:
        """Drain every sink until nothing is pending or a send fails; returns changes delivered."""
        total = 0
        for sink in self._sinks:
            delivered, _ = await self._drain(sink)
            total += delivered
        return total

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Deliver every `interval_s` until `stop` is set; after failures, back off per sink."""
        async with asyncio.TaskGroup() as group:
            for sink in self._sinks:
                group.create_task(self._run_sink(sink, stop, interval_s), name=f"cdp-deliver[{sink.name}]")

    async def _run_sink(self, sink: Sink, stop: asyncio.Event, interval_s: float) -> None:
        backoff = 0.0
        while not stop.is_set():
            try:
                _, failure = await self._drain(sink)
            except VehicleIngestError as exc:  # the store failed: same treatment as a failed send
                log.warning("CDP sink %s: outbox unavailable (%s); will retry", sink.name, exc)
                failure = exc
            backoff = self._next_backoff(backoff, failure)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff or interval_s)

    def _next_backoff(self, previous: float, failure: Exception | None) -> float:
        low, high = self._backoff
        if failure is None:
            return 0.0
        if isinstance(failure, DeliveryError) and failure.rejected:
            return high  # a refused payload will not pass in 0.2 s; don't hammer the CDP with it
        step = min(high, max(low, previous * 2))
        # Jitter: many gateways retrying one CDP after its outage should not arrive in lockstep.
        return step * (0.5 + random.random() / 2)

    async def _drain(self, sink: Sink) -> tuple[int, DeliveryError | None]:
        delivered = 0
        while True:
            batch = await self._run_store(self._outbox.pending, sink.name, self._batch_size)
            if not batch:
                self._metrics.depth.labels(sink=sink.name).set(0)
                return delivered, None
            try:
                await self._send(sink, batch)
            except DeliveryError as exc:
                _log_failure(sink.name, len(batch), exc)
                depth = await self._run_store(self._outbox.depth, sink.name)
                self._metrics.depth.labels(sink=sink.name).set(depth)
                return delivered, exc
            await self._run_store(self._outbox.mark_delivered, sink.name, [c.message_id for c in batch])
            self._metrics.delivered.labels(sink=sink.name).inc(len(batch))
            delivered += len(batch)

    async def _send(self, sink: Sink, batch: list[TagChange]) -> None:
        started = time.perf_counter()
        try:
            with observing_requests(self._metrics.count_request):
                await sink.send(batch)
        finally:
            self._metrics.seconds.labels(sink=sink.name).observe(time.perf_counter() - started)


def _log_failure(sink: str, n: int, exc: DeliveryError) -> None:
    if exc.rejected:
        # Retried anyway (nothing is dropped), but a person has to look: the
        # payload or the sink's configuration (write key, project) is wrong.
        log.error(
            "CDP sink %s REJECTED a batch of %d changes (%s): %s; retrying with maximum backoff, "
            "fix the sink configuration or payload",
            sink,
            n,
            exc.status,
            exc.detail,
        )
    else:
        log.warning(
            "CDP sink %s: batch of %d changes not delivered (%s): %s; will retry", sink, n, exc.status, exc.detail
        )
