"""The running gateway: MQTT source → batches → ingest (decode, validate, store) → ack.

One asyncio loop supervises named tasks under a TaskGroup. Store work runs on
one dedicated thread so the embedded engine is never used concurrently and
the loop keeps receiving while a batch is being written.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from gateway.config import GatewayConfig
from gateway.http import HttpServer, Response
from gateway.mqtt_source import Delivery, MqttSettings, MqttSource
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.errors import StoreError
from vehicle_ingest.ingest import Ingestor, IngestOutcome, IngestPolicy
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.storage import Store
from vehicle_ingest.validate import SkewPolicy

__all__ = ["Gateway", "run_gateway"]

log = logging.getLogger(__name__)

_RETRY_MAX_S = 10.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Gateway:
    def __init__(self, config: GatewayConfig, store: Store, registry: CollectorRegistry) -> None:
        self.config = config
        self._store = store
        self._registry = registry
        self._metrics = Metrics.create(registry)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        policy = IngestPolicy(
            max_payload_bytes=config.max_payload_bytes,
            skew=SkewPolicy(config.max_past_s * 1000, config.max_future_s * 1000),
        )
        self._ingestor = Ingestor(store, load_signal_catalog(), load_event_catalog(), self._metrics, policy)
        self._stopping = asyncio.Event()
        self._store_ok = True
        self.source: MqttSource | None = None
        self.http: HttpServer | None = None

    # -- lifecycle ---------------------------------------------------------

    def request_stop(self) -> None:
        log.info("stop requested: flushing what was received, then exiting")
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.source = MqttSource(self._mqtt_settings(), self._metrics, loop)
        self.http = HttpServer(self.config.http_host, self.config.http_port, self._routes())
        await self.http.start()
        self.source.start()
        log.info("gateway up: http %s:%d, store %s", self.config.http_host, self.http.port, self._store.dsn)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._ingest_loop(), name="ingest")
        finally:
            self.source.close()
            await self.http.close()
            self._executor.shutdown(wait=True)

    def _mqtt_settings(self) -> MqttSettings:
        c = self.config
        return MqttSettings(
            url=c.mqtt_url,
            client_id=c.client_id,
            share_group=c.share_group,
            session_expiry_s=c.session_expiry_s,
            receive_max=c.receive_max,
        )

    # -- batching ------------------------------------------------------------

    async def _ingest_loop(self) -> None:
        assert self.source is not None
        while True:
            if self._stopping.is_set():
                self.source.stop_accepting()
            batch = await self._collect(self.source.queue)
            if batch:
                await self._process(batch)
            elif self._stopping.is_set() and self.source.queue.empty():
                return

    async def _collect(self, queue: asyncio.Queue[Delivery]) -> list[Delivery]:
        """Up to batch_max_messages / batch_max_bytes, waiting at most batch_linger_ms after the first."""
        c = self.config
        batch: list[Delivery] = []
        size = 0
        deadline = None
        while len(batch) < c.batch_max_messages and size < c.batch_max_bytes:
            timeout = 0.2 if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                if deadline is None:
                    break  # idle: let the caller check for stop
                continue
            batch.append(item)
            size += len(item.payload)
            if deadline is None:
                deadline = time.monotonic() + c.batch_linger_ms / 1000
        return batch

    async def _process(self, batch: list[Delivery]) -> None:
        assert self.source is not None
        topics = [d.topic for d in batch]
        payloads = [d.payload for d in batch]
        outcome = await self._ingest_with_retry(topics, payloads)
        self.source.settle(batch)
        if outcome.rejected:
            log.info("rejected %s", dict(outcome.rejected))

    async def _ingest_with_retry(self, topics: list[str], payloads: list[bytes]) -> IngestOutcome:
        """Retry until stored: the store's identity check makes each attempt idempotent."""
        loop = asyncio.get_running_loop()
        delay = 0.2
        while True:
            try:
                outcome = await loop.run_in_executor(self._executor, self._ingestor.ingest, topics, payloads, _now_ms())
            except StoreError as exc:
                self._store_ok = False
                self._metrics.store_errors.inc()
                log.error("store failed, batch not acked, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            self._store_ok = True
            return outcome

    # -- HTTP -----------------------------------------------------------------

    def _routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("GET", "/metrics"): self._metrics_route,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/api/stats"): self._stats_route,
            ("POST", "/api/sql"): self._sql_route,
        }

    async def _metrics_route(self, _body: bytes) -> Response:
        return Response(200, generate_latest(self._registry), "text/plain; version=0.0.4; charset=utf-8")

    async def _healthz(self, _body: bytes) -> Response:
        return Response.json(200, {"status": "alive"})

    def readiness(self) -> dict[str, bool]:
        unacked = self.source.unacked if self.source else 0
        return {
            "broker_connected": bool(self.source and self.source.connected),
            "store_writable": self._store_ok,
            "backlog_ok": unacked <= self.config.backlog_limit,
        }

    async def _readyz(self, _body: bytes) -> Response:
        checks = self.readiness()
        return Response.json(200 if all(checks.values()) else 503, {"ready": all(checks.values()), **checks})

    async def _stats_route(self, _body: bytes) -> Response:
        stats = await asyncio.get_running_loop().run_in_executor(self._executor, self._store.stats)
        return Response.json(200, stats)

    async def _sql_route(self, body: bytes) -> Response:
        sql = body.decode("utf-8")
        names, rows = await asyncio.get_running_loop().run_in_executor(self._executor, self._store.query, sql)
        return Response.json(200, {"columns": names, "rows": rows})


def run_gateway(config: GatewayConfig) -> int:
    """Open the store, migrate, serve until SIGTERM/SIGINT; exit code 0 after a clean flush."""
    store = Store.open(config.store)
    applied = store.migrate()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))

    async def main() -> None:
        gateway = Gateway(config, store, CollectorRegistry())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.request_stop)
        await gateway.run()

    try:
        asyncio.run(main())
    finally:
        store.close()
    return 0
