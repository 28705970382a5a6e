"""The gateway's scheduled jobs: the tag cycle, CDP delivery, and handing the engine's free memory back.

Each runs its store work on the store thread one short step at a time, so an ingest batch
waits for at most one step, never a whole cycle. CDP delivery is the exception: it runs on a
thread and connection of its own (`delivery`), so a send never waits for an ingest batch either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry

from vehicle_ingest.cdp import Deliverer, Outbox, RunStore, sink_from_url
from vehicle_ingest.errors import StoreError
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.ingest_loop import IngestHealth
from vehicle_ingest.gateway.memory import release_heap, release_library_pages
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.storage import Store
from vehicle_ingest.tags import TagCycle

__all__ = ["Jobs"]

log = logging.getLogger(__name__)

_RELEASE_MEMORY_EVERY_S = 5.0
_RELEASE_LIBRARY_PAGES_EVERY_S = 60.0
Runner = RunStore


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Jobs:
    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        cycle: TagCycle,
        metrics: Metrics,
        registry: CollectorRegistry,
        run_store: Runner,
        stopping: asyncio.Event,
        delivery: tuple[Store, Runner],
    ) -> None:
        """`delivery`: the deliverer's own connection to the store and the runner of its thread."""
        self._config = config
        self._store = store
        self.cycle = cycle
        self._metrics = metrics
        self._registry = registry
        self._run_store = run_store
        self._stopping = stopping
        self._delivery = delivery
        self.tag_lock = asyncio.Lock()  # the schedule, the API and erase never interleave their steps
        self.deliverer = self._deliverer() if config.cdp_urls.strip() else None

    @property
    def config(self) -> GatewayConfig:
        return self._config

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- tags --------------------------------------------------------------------

    async def tags_loop(self) -> None:
        while not self._stopping.is_set():
            await self._sleep(self._config.tags_interval_s)
            if self._stopping.is_set():
                return
            try:
                report = await self.run_tag_cycle()
            except Exception:  # a tag failure must never take ingestion down with it
                log.exception("tag cycle failed (retried next interval)")
                continue
            log.info("tag cycle: %s", report)

    async def run_tag_cycle(self, as_of_ms: int | None = None) -> dict[str, Any]:
        """Features, then tags (vehicle_ingest.tags.TagCycle), one step per turn of the store thread."""
        async with self.tag_lock:
            steps = self.cycle.start(as_of_ms or _now_ms())
            more = True
            while more:
                emitted = steps.emitted
                more = await self._run_store(steps.step)
                if steps.emitted > emitted:
                    await self.outbox_changed()
            self._metrics.tag_changes.labels("added").inc(steps.added)
            self._metrics.tag_changes.labels("removed").inc(steps.changes - steps.added)
            return steps.report()

    async def show_tags(self, as_of_ms: int | None = None) -> dict[str, list[str]]:
        async with self.tag_lock:  # rebuilding owner_features mid-cycle would change later steps' evidence
            return await self._run_store(self.cycle.show, as_of_ms or _now_ms())

    # -- CDP ---------------------------------------------------------------------

    def _deliverer(self) -> Deliverer:
        c = self._config
        sinks = [
            sink_from_url(u.strip(), timeout_s=c.cdp_timeout_s, allow_vin=bool(c.cdp_allow_vin))
            for u in c.cdp_urls.split(",")
            if u.strip()
        ]
        store, run = self._delivery
        return Deliverer(Outbox(store), sinks, self._registry, run)

    async def deliver_loop(self) -> None:
        assert self.deliverer is not None
        await self.deliverer.run(self._stopping, self._config.deliver_interval_s)

    async def outbox_changed(self) -> None:
        """Changes were enqueued or released: recount the depth gauges now and deliver now.

        Without this the gauge stays at the last round's figure and the changes wait up to
        deliver_interval_s, which a moment's latency pays in full (GUIDE 8). The recount runs on
        the CDP thread: it never holds up ingestion, only (rarely: tag runs and releases) a round
        that is delivering at the same moment.
        """
        if self.deliverer is None:
            return
        try:
            await self.deliverer.refresh_depth()
        except StoreError as exc:  # the changes are stored; the next delivery round recounts
            log.warning("could not recount the CDP outbox: %s", exc)
        self.deliverer.wake()

    def wake_deliverer(self) -> None:
        """Moments were enqueued: deliver now (a round that drains the outbox sets its gauge to 0 itself).

        Unlike `outbox_changed`, no recount first: two count statements on the CDP thread for
        every batch with a moment, each in front of that moment's send.
        """
        if self.deliverer is not None:
            self.deliverer.wake()

    # -- memory ------------------------------------------------------------------

    async def release_memory_loop(self, health: IngestHealth) -> None:
        """Hand freed pages back to the OS every few seconds after batches or reads: RSS stays flat.

        The engine's (jemalloc, on the store thread) and then Python's and numpy's (glibc).

        A read that reached query_max_memory_bytes leaves that much in jemalloc's free lists otherwise.
        Library pages not run lately are unmapped once a minute: they come back on their next use.
        """
        libraries_released = time.monotonic()
        while not self._stopping.is_set():
            await self._sleep(_RELEASE_MEMORY_EVERY_S)
            if time.monotonic() - libraries_released >= _RELEASE_LIBRARY_PAGES_EVERY_S:
                libraries_released = time.monotonic()
                release_library_pages()
            if not health.memory_used:
                continue
            health.memory_used = False
            try:
                await self._run_store(self._store.release_memory)
            except StoreError as exc:
                log.warning("could not release the store's free memory: %s", exc)
            release_heap()
