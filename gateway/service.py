"""The running gateway: lifecycle and wiring.

One asyncio loop supervises named tasks under a TaskGroup: ingest (gateway.ingest_loop), receipts,
the tag schedule and CDP delivery (gateway.jobs); HTTP routes live in gateway.routes. Store work
runs on dedicated threads, each with its own connection: the store thread commits and runs the
jobs' steps, the lookup thread prepares the next batch, the CDP thread delivers the outbox, read
threads answer queries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, disable_created_metrics

from vehicle_ingest.can.models import CanDecoder, default_models_path
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.cdp import Outbox
from vehicle_ingest.errors import ConfigError, VehicleIngestError
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.config_render import redact
from vehicle_ingest.gateway.http import HttpLimits, HttpServer
from vehicle_ingest.gateway.ingest_loop import EXIT_GAVE_UP, IngestHealth, IngestLoop
from vehicle_ingest.gateway.jobs import Jobs
from vehicle_ingest.gateway.memory import release_library_pages, tune_heap
from vehicle_ingest.gateway.mqtt_source import MqttSettings, MqttSource
from vehicle_ingest.gateway.receipt_sender import ReceiptSender
from vehicle_ingest.gateway.routes import PUBLIC_ROUTES, Routes
from vehicle_ingest.metrics import Metrics, register_process_metrics
from vehicle_ingest.moments import MomentEngine, load_moment_definitions
from vehicle_ingest.pipeline import Pipeline, PipelinePolicy
from vehicle_ingest.privacy import set_location_retention
from vehicle_ingest.reads import QueryLimits, ReadPool, ReadSession
from vehicle_ingest.storage import Store
from vehicle_ingest.tags import TagCycle, load_tag_definitions
from vehicle_ingest.validate import SkewPolicy

__all__ = ["EXIT_GAVE_UP", "Gateway", "run_gateway"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Gateway:
    def __init__(self, config: GatewayConfig, store: Store, registry: CollectorRegistry) -> None:
        self.config = config
        self._store = store
        self._registry = registry
        self._metrics = Metrics.create(registry)
        self._metrics.receive_max.set(config.receive_max)
        self._stopping = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        # Batch N+1's identity lookup runs on its own connection while batch N inserts.
        self._lookup_store = Store.open(store.dsn)
        self._lookup_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookup")
        # CDP delivery (outbox reads, delivered marks, quarantine, depth counts) has its own connection
        # and thread too: a moment's send never queues behind the next batch's insert (issue 17).
        # The outbox's enqueue stays on the store thread, before the ack.
        self._cdp_store = Store.open(store.dsn)
        self._cdp_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdp")
        # Reads have their own sessions and threads: a query never waits for, nor holds up, ingestion.
        self._reads = ReadPool(config.query_store or store.dsn, query_limits(config))
        self._read_executor = ThreadPoolExecutor(max_workers=config.query_max_concurrent, thread_name_prefix="read")
        signals, events = load_signal_catalog(), load_event_catalog()
        self._pipeline = self._build_pipeline(signals, events)
        cycle = TagCycle(store, signals, events, load_tag_definitions())
        delivery = (self._cdp_store, self.run_cdp)
        self.jobs = Jobs(config, store, cycle, self._metrics, registry, self.run_store, self._stopping, delivery)
        moments = load_moment_definitions(signals, events) if config.moments else ()
        # Moments run on the store thread with the batch they come from (before its ack).
        self._moments = MomentEngine(store, moments, self._metrics) if moments else None
        self.ingest: IngestLoop | None = None
        self.exit_code = 0
        self.source: MqttSource | None = None
        self.http: HttpServer | None = None

    def _build_pipeline(self, signals: Any, events: Any) -> Pipeline:
        c = self.config
        policy = PipelinePolicy(
            max_payload_bytes=c.max_payload_bytes,
            skew=SkewPolicy(c.max_past_s * 1000, c.max_future_s * 1000),
        )
        can = CanDecoder.load(Path(c.can_models) if c.can_models else default_models_path(), signals)
        return Pipeline(self._store, signals, events, self._metrics, policy, can, lookup=self._lookup_store)

    # -- lifecycle ---------------------------------------------------------

    def request_stop(self) -> None:
        if self._stopping.is_set():
            log.warning("second stop signal: exiting now; unacked messages will be redelivered")
            os._exit(EXIT_GAVE_UP)
        log.info("stop requested: flushing what was received, then exiting")
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self._mqtt_settings()
        self.source = source = MqttSource(settings, self._metrics, loop)
        receipts_out = ReceiptSender(settings) if self.config.receipts else None
        self.ingest = ingest = IngestLoop(
            self._pipeline,
            source,
            receipts_out,
            self.config,
            self._metrics,
            self.run_store,
            self.run_lookup,
            self._stopping,
            self._moments,
            Outbox(self._store),
            self.jobs.wake_deliverer,
        )
        routes = Routes(self._store, self._registry, self.jobs, self.run_store, self.run_read, self.readiness)
        self.http = HttpServer(
            self.config.http_host,
            self.config.http_port,
            routes.table(),
            PUBLIC_ROUTES,
            self.config.api_token,
            http_limits(self.config),
            on_evict=self._metrics.http_evictions.inc,
        )
        await self.http.start()
        source.start()
        if receipts_out is not None:
            receipts_out.start()
        log.info("gateway up: http %s:%d, store %s", self.config.http_host, self.http.port, redact(self._store.dsn))
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._ingest(ingest), name="ingest")
                tasks.create_task(self.jobs.release_memory_loop(ingest.health), name="memory")
                if self.config.receipts:
                    tasks.create_task(ingest.receipts_loop(), name="receipts")
                if self.config.tags_interval_s > 0:
                    tasks.create_task(self.jobs.tags_loop(), name="tags")
                if self.jobs.deliverer is not None:
                    tasks.create_task(self.jobs.deliver_loop(), name="cdp")
        finally:
            ingest.publish_receipts()  # what the last batches settled after the receipts task ended
            source.close()
            if receipts_out is not None:
                await loop.run_in_executor(None, receipts_out.flush, 2.0)
                receipts_out.close()
            await self.http.close()
            self.close()

    def close(self) -> None:
        """Stop the store threads and close their connections (`run` does it on its way out)."""
        self._read_executor.shutdown(wait=True, cancel_futures=True)
        self._reads.close()
        self._lookup_executor.shutdown(wait=True)
        self._lookup_store.close()
        self._cdp_executor.shutdown(wait=True)
        self._cdp_store.close()
        self._executor.shutdown(wait=True)

    async def _ingest(self, ingest: IngestLoop) -> None:
        self.exit_code = await ingest.run()

    def _mqtt_settings(self) -> MqttSettings:
        c = self.config
        return MqttSettings(
            url=c.mqtt_url,
            client_id=c.mqtt_client_id,
            share_group=c.share_group,
            session_expiry_s=c.session_expiry_s,
            receive_max=c.receive_max,
            tls_ca=c.mqtt_tls_ca,
            tls_cert=c.mqtt_tls_cert,
            tls_key=c.mqtt_tls_key,
        )

    async def run_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the store thread: ingestion's session is never used from two threads at once."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_lookup(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the lookup thread (the pipeline's prepare and replan)."""
        return await asyncio.get_running_loop().run_in_executor(self._lookup_executor, fn, *args)

    async def run_cdp(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the CDP thread: the deliverer's store work, on its own connection."""
        return await asyncio.get_running_loop().run_in_executor(self._cdp_executor, fn, *args)

    async def run_read(self, work: Callable[[ReadSession], T]) -> T:
        """Run `work` on a free read session and thread; `QueryBusyError` at once when there is none."""
        if self.ingest is not None:
            self.ingest.health.memory_used = True  # a read may leave its memory limit's worth in the allocator
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, self._reads.bind(work))

    def readiness(self) -> dict[str, bool]:
        health = self.ingest.health if self.ingest else IngestHealth()
        waiting = bool(self.source and self.source.unacked > 0)
        stalled = waiting and time.monotonic() - health.last_progress > self.config.stall_timeout_s
        return {
            "broker_connected": bool(self.source and self.source.connected),
            "store_writable": health.store_ok,
            "ingest_flowing": not stalled,
        }


def query_limits(config: GatewayConfig) -> QueryLimits:
    return QueryLimits(
        max_memory_bytes=config.query_max_memory_bytes,
        max_execution_s=config.query_max_execution_s,
        max_result_rows=config.query_max_result_rows,
        max_result_bytes=config.query_max_result_bytes,
        max_threads=config.query_max_threads,
        max_concurrent=config.query_max_concurrent,
        max_query_bytes=config.query_max_bytes,
    )


def http_limits(config: GatewayConfig) -> HttpLimits:
    return HttpLimits(
        max_connections=config.http_max_connections,
        max_headers=config.http_max_headers,
        max_header_bytes=config.http_max_header_bytes,
        max_body_bytes=config.http_max_body_bytes,
        idle_timeout_s=config.http_idle_timeout_s,
        body_timeout_s=config.http_body_timeout_s,
    )


def _raise_open_file_limit() -> None:
    """Soft limit up to the hard one: the store's files, MQTT and HTTP share it (HTTP is capped on its own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_gateway(config: GatewayConfig) -> int:
    """Open the store, migrate, serve until SIGTERM/SIGINT; 0 after a clean flush, 75 if a batch was left unacked."""
    if config.workers > 1:
        from vehicle_ingest.gateway.workers import run_workers

        return run_workers(config)
    _raise_open_file_limit()
    tune_heap()  # before the first batch: the thresholds decide where its arrays are allocated
    disable_created_metrics()  # no *_created series: Prometheus ignores them, dashboards trip over them
    _check_port_free(config.http_host, config.http_port)  # before a new store is created and migrated
    store = Store.open(config.store)
    log.info("store %s", redact(store.dsn))
    applied = store.migrate()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    if set_location_retention(store, config.location_retention_days, load_signal_catalog()):
        log.info("raw location now expires after %d days", config.location_retention_days)
    release_library_pages()  # what start-up alone touched: most of chDB's and LLVM's libraries
    code = 0

    async def main() -> None:
        nonlocal code
        registry = CollectorRegistry()
        register_process_metrics(registry)
        gateway = Gateway(config, store, registry)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.request_stop)
        await gateway.run()
        code = gateway.exit_code

    try:
        asyncio.run(main())
    except* VehicleIngestError as group:  # a task's failure: one line, not a task group's traceback
        raise group.exceptions[0] from None
    finally:
        store.close()
    return code


def _check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            problem = f"cannot listen on {host}:{port}: {exc.strerror} (another gateway?)"
            raise ConfigError("http_port", problem) from exc
