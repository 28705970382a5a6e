"""The running gateway: MQTT source → batches → ingest (decode, validate, store) → ack.

One asyncio loop supervises named tasks under a TaskGroup: ingest, the tag
schedule and CDP delivery. Store work runs on one dedicated thread so the
embedded engine is never used concurrently and the loop keeps receiving
while a batch is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from vehicle_ingest.can.models import CanDecoder, default_models_path
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.cdp import Deliverer, Outbox, Quarantine, sink_from_url
from vehicle_ingest.errors import (
    ConfigError,
    ErasureIncompleteError,
    StoreError,
    UnknownErasureTargetError,
    VehicleIngestError,
)
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.config_render import redact
from vehicle_ingest.gateway.http import HttpLimits, HttpServer, Response
from vehicle_ingest.gateway.mqtt_source import Delivery, MqttSettings, MqttSource
from vehicle_ingest.ingest import Ingestor, IngestOutcome, IngestPolicy
from vehicle_ingest.metrics import Metrics, register_process_metrics
from vehicle_ingest.owners import Ownership, parse_registry, plan_registry, save_registry
from vehicle_ingest.privacy import (
    ERASE_WAIT_S,
    Erasure,
    ErasureTarget,
    delete_rows,
    replaced_parts_left,
    set_location_retention,
)
from vehicle_ingest.reads import QueryLimits, ReadPool, ReadSession
from vehicle_ingest.receipts import ReceiptBook
from vehicle_ingest.storage import Store, fleet_stats
from vehicle_ingest.tags import TagCycle, load_tag_definitions
from vehicle_ingest.tags.engine import EMIT_CHUNK
from vehicle_ingest.validate import SkewPolicy

__all__ = ["EXIT_GAVE_UP", "Gateway", "run_gateway"]

log = logging.getLogger(__name__)

EXIT_GAVE_UP = 75  # EX_TEMPFAIL: stopped with a batch not stored (and so not acked)
_RETRY_MAX_S = 10.0
_RELEASE_MEMORY_EVERY_S = 5.0
_PUBLIC_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})  # Prometheus and probes; the rest is /api
T = TypeVar("T")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _as_of(body: bytes) -> int | None:
    """Optional `{"as_of_ms": N}` request body: evaluate tags as of that instant."""
    if not body.strip():
        return None
    value = json.loads(body).get("as_of_ms")
    if value is not None and not isinstance(value, int):
        raise ValueError("as_of_ms must be an integer (ms since the Unix epoch)")
    return value


def _int_field(request: dict[str, Any], key: str, default: int) -> int:
    value = request.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be a whole number >= 0")
    return value


class _GaveUpError(Exception):
    """Stopping while the store keeps failing: leave the batch unacked for redelivery."""


class Gateway:
    def __init__(self, config: GatewayConfig, store: Store, registry: CollectorRegistry) -> None:
        self.config = config
        self._store = store
        self._registry = registry
        self._metrics = Metrics.create(registry)
        self._metrics.receive_max.set(config.receive_max)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        # Reads have their own sessions and threads: a query never waits for, nor holds up, the store thread.
        self._reads = ReadPool(config.query_store or store.dsn, query_limits(config))
        self._read_executor = ThreadPoolExecutor(max_workers=config.query_max_concurrent, thread_name_prefix="read")
        policy = IngestPolicy(
            max_payload_bytes=config.max_payload_bytes,
            skew=SkewPolicy(config.max_past_s * 1000, config.max_future_s * 1000),
        )
        signals, events = load_signal_catalog(), load_event_catalog()
        can = CanDecoder.load(Path(config.can_models) if config.can_models else default_models_path(), signals)
        self._ingestor = Ingestor(store, signals, events, self._metrics, policy, can)
        self._cycle = TagCycle(store, signals, events, load_tag_definitions())
        self._quarantine = Quarantine(store)
        self._cdp: Deliverer | None = None  # set by run() when cdp_urls names sinks
        self._stopping = asyncio.Event()
        self._tag_lock = asyncio.Lock()
        self._store_ok = True
        self._last_progress = time.monotonic()
        self._memory_used = False  # set by batches and reads; the memory task hands freed pages back
        self._receipts = ReceiptBook()
        self.exit_code = 0
        self.source: MqttSource | None = None
        self.http: HttpServer | None = None

    # -- lifecycle ---------------------------------------------------------

    def request_stop(self) -> None:
        if self._stopping.is_set():
            log.warning("second stop signal: exiting now; unacked messages will be redelivered")
            os._exit(EXIT_GAVE_UP)
        log.info("stop requested: flushing what was received, then exiting")
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.source = MqttSource(self._mqtt_settings(), self._metrics, loop)
        self.http = HttpServer(
            self.config.http_host,
            self.config.http_port,
            self._routes(),
            _PUBLIC_ROUTES,
            self.config.api_token,
            http_limits(self.config),
            on_evict=self._metrics.http_evictions.inc,
        )
        await self.http.start()
        self.source.start()
        log.info("gateway up: http %s:%d, store %s", self.config.http_host, self.http.port, redact(self._store.dsn))
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._ingest_loop(), name="ingest")
                tasks.create_task(self._release_memory_loop(), name="memory")
                if self.config.receipts:
                    tasks.create_task(self._receipts_loop(), name="receipts")
                if self.config.tags_interval_s > 0:
                    tasks.create_task(self._tags_loop(), name="tags")
                if self.config.cdp_urls.strip():
                    self._cdp = self._deliverer()
                    tasks.create_task(self._cdp.run(self._stopping, self.config.deliver_interval_s), name="cdp")
        finally:
            self.publish_receipts()  # what the last batches settled after the receipts task ended
            await asyncio.get_running_loop().run_in_executor(None, self.source.flush, 2.0)
            self.source.close()
            await self.http.close()
            self._read_executor.shutdown(wait=True, cancel_futures=True)
            self._reads.close()
            self._executor.shutdown(wait=True)

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

    async def run_read(self, work: Callable[[ReadSession], T]) -> T:
        """Run `work` on a free read session and thread; `QueryBusyError` at once when there is none."""
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, self._reads.bind(work))

    # -- ingest ------------------------------------------------------------------

    async def _ingest_loop(self) -> None:
        assert self.source is not None
        while True:
            if self._stopping.is_set():
                self.source.stop_accepting()
            batch = await self._collect(self.source.queue)
            if batch:
                try:
                    await self._process(batch)
                except _GaveUpError:
                    self.exit_code = EXIT_GAVE_UP
                    return
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

    async def _process(self, batch: list[Delivery]) -> None:
        assert self.source is not None
        topics = [d.topic for d in batch]
        payloads = [d.payload for d in batch]
        outcome = await self._ingest_with_retry(topics, payloads)
        if self.config.receipts:
            self._receipts.add(outcome.verdicts)  # the insert returned: these are settled
        self.source.settle(batch)
        self._last_progress = time.monotonic()
        self._memory_used = True
        if outcome.rejected:
            log.info("rejected %s", dict(outcome.rejected))

    async def _receipts_loop(self) -> None:
        """Every receipt_interval_ms, one receipt per VIN with settled messages (the last round: `run`, on exit)."""
        while not self._stopping.is_set():
            await self._sleep_unless_stopping(self.config.receipt_interval_ms / 1000)
            self.publish_receipts()

    def publish_receipts(self) -> None:
        assert self.source is not None
        metrics = self._metrics
        for topic, payload in self._receipts.drain():
            if self.source.publish(topic, payload):
                metrics.receipts.inc()
                metrics.receipt_bytes.inc(len(payload))
            else:
                metrics.receipts_dropped.inc()

    async def _release_memory_loop(self) -> None:
        """Hand the engine's freed pages back to the OS every few seconds after batches or reads: RSS stays flat.

        A read that reached query_max_memory_bytes leaves that much in jemalloc's free lists otherwise.
        """
        while not self._stopping.is_set():
            await self._sleep_unless_stopping(_RELEASE_MEMORY_EVERY_S)
            if not self._memory_used:
                continue
            self._memory_used = False
            try:
                await self.run_store(self._store.release_memory)
            except StoreError as exc:
                log.warning("could not release the store's free memory: %s", exc)

    async def _ingest_with_retry(self, topics: list[str], payloads: list[bytes]) -> IngestOutcome:
        """Retry until stored: the store's identity check makes each attempt idempotent."""
        delay = 0.2
        give_up_at: float | None = None
        while True:
            try:
                outcome = await self.run_store(self._ingestor.ingest, topics, payloads, _now_ms())
            except StoreError as exc:
                self._store_ok = False
                self._metrics.store_errors.inc()
                log.error("store failed, batch not acked, retrying in %.1fs: %s", delay, exc)
                if self._stopping.is_set():
                    give_up_at = give_up_at or time.monotonic() + self.config.stop_timeout_s
                    if time.monotonic() >= give_up_at:
                        log.error("stopping with %d messages not stored: they stay unacked for redelivery", len(topics))
                        raise _GaveUpError from exc
                await self._sleep_unless_stopping(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            self._store_ok = True
            return outcome

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- tags and CDP ----------------------------------------------------------

    async def _tags_loop(self) -> None:
        while not self._stopping.is_set():
            await self._sleep_unless_stopping(self.config.tags_interval_s)
            if self._stopping.is_set():
                return
            try:
                report = await self.run_tag_cycle()
            except Exception:  # a tag failure must never take ingestion down with it
                log.exception("tag cycle failed (retried next interval)")
                continue
            log.info("tag cycle: %s", report)

    async def run_tag_cycle(self, as_of_ms: int | None = None) -> dict[str, Any]:
        """Features, then tags, in slices: ingest batches get the store thread in between."""
        async with self._tag_lock:  # the schedule and the API never interleave their slices
            return await self._tag_cycle_unlocked(as_of_ms or _now_ms())

    async def show_tags(self, as_of_ms: int | None = None) -> dict[str, list[str]]:
        async with self._tag_lock:  # rebuilding owner_features mid-cycle would change later slices' evidence
            return await self.run_store(self._cycle.show, as_of_ms or _now_ms())

    async def _tag_cycle_unlocked(self, now: int) -> dict[str, Any]:
        features = await self.run_store(self._cycle.update_features, now)
        engine = self._cycle.engine
        owners, diff = await self.run_store(engine.plan, now)
        added = 0
        for lo in range(0, len(diff), EMIT_CHUNK):
            added += await self.run_store(engine.emit, diff[lo : lo + EMIT_CHUNK], now)
            await self._outbox_changed()
        self._metrics.tag_changes.labels("added").inc(added)
        self._metrics.tag_changes.labels("removed").inc(len(diff) - added)
        tags = {"owners": owners, "changes": len(diff), "added": added, "removed": len(diff) - added}
        return {"features": features, "tags": tags}

    async def _outbox_changed(self) -> None:
        """Changes were enqueued or released: recount the depth gauges now and deliver now.

        Without this the gauge stays at the last round's figure and the changes wait up to
        deliver_interval_s, which a moment's latency pays in full (GUIDE 8).
        """
        if self._cdp is None:
            return
        try:
            await self._cdp.refresh_depth()
        except StoreError as exc:  # the changes are stored; the next delivery round recounts
            log.warning("could not recount the CDP outbox: %s", exc)
        self._cdp.wake()

    def _deliverer(self) -> Deliverer:
        c = self.config
        sinks = [
            sink_from_url(u.strip(), timeout_s=c.cdp_timeout_s, allow_vin=bool(c.cdp_allow_vin))
            for u in c.cdp_urls.split(",")
            if u.strip()
        ]
        return Deliverer(Outbox(self._store), sinks, self._registry, self.run_store)

    # -- HTTP -----------------------------------------------------------------

    def _routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("GET", "/metrics"): self._metrics_route,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/api/stats"): self._stats_route,
            ("POST", "/api/sql"): self._sql_route,
            ("GET", "/api/tags"): self._tags_show_route,
            ("POST", "/api/tags/show"): self._tags_show_route,
            ("POST", "/api/tags/run"): self._tags_run_route,
            ("POST", "/api/owners"): self._owners_route,
            ("POST", "/api/owners/check"): self._owners_check_route,
            ("POST", "/api/erase"): self._erase_route,
            ("POST", "/api/report"): self._report_route,
            ("POST", "/api/audience"): self._audience_route,
            ("GET", "/api/cdp/quarantine"): self._quarantine_route,
            ("POST", "/api/cdp/quarantine"): self._quarantine_route,
            ("POST", "/api/cdp/release"): self._release_route,
        }

    async def _metrics_route(self, _body: bytes) -> Response:
        return Response(200, generate_latest(self._registry), "text/plain; version=0.0.4; charset=utf-8")

    async def _healthz(self, _body: bytes) -> Response:
        return Response.json(200, {"status": "alive"})

    def readiness(self) -> dict[str, bool]:
        waiting = bool(self.source and self.source.unacked > 0)
        stalled = waiting and time.monotonic() - self._last_progress > self.config.stall_timeout_s
        return {
            "broker_connected": bool(self.source and self.source.connected),
            "store_writable": self._store_ok,
            "ingest_flowing": not stalled,
        }

    async def _readyz(self, _body: bytes) -> Response:
        checks = self.readiness()
        return Response.json(200 if all(checks.values()) else 503, {"ready": all(checks.values()), **checks})

    async def _report_route(self, body: bytes) -> Response:
        """The report's data as JSON (the CLI draws the charts): `{"as_of_ms": N, "days": D}`."""
        from vehicle_ingest.report.queries import fetch_report_data

        request = json.loads(body or b"{}")
        as_of_ms, days = _int_field(request, "as_of_ms", _now_ms()), _int_field(request, "days", 90)
        data = await self.run_read(lambda session: fetch_report_data(session, as_of_ms, days).to_json())
        return Response.json(200, data)

    async def _audience_route(self, body: bytes) -> Response:
        """`{"tag": ID, "as_of_ms": N}`: the owners holding the tag, since when and why."""
        from vehicle_ingest.report.audience import audience

        request = json.loads(body or b"{}")
        tag, as_of_ms = str(request.get("tag", "")), _int_field(request, "as_of_ms", _now_ms())
        known = frozenset(d.id for d in self._cycle.engine.definitions)
        members = await self.run_read(lambda session: audience(session, tag, as_of_ms, known))
        rows = [{"owner_id": m.owner_id, "since_ms": m.since_ms, "evidence": m.evidence} for m in members]
        return Response.json(200, {"tag": tag, "members": rows})

    async def _stats_route(self, _body: bytes) -> Response:
        return Response.json(200, await self.run_read(fleet_stats))

    async def _sql_route(self, body: bytes) -> Response:
        text = body.decode("utf-8")  # not UTF-8: a 400 naming the byte
        return Response(200, await self.run_read(lambda session: session.run(text).to_json()), "application/json")

    async def _tags_show_route(self, body: bytes) -> Response:
        return Response.json(200, await self.show_tags(_as_of(body)))

    async def _tags_run_route(self, body: bytes) -> Response:
        return Response.json(200, await self.run_tag_cycle(_as_of(body)))

    async def _owners_route(self, body: bytes) -> Response:
        """The body is the registry file (CSV, JSON or .xlsx bytes): load it whole, or 400 naming every problem."""
        rows = await self._registry_rows(body)
        if isinstance(rows, Response):
            return rows
        return Response.json(200, {"loaded": await self.run_store(save_registry, self._store, rows)})

    async def _owners_check_route(self, body: bytes) -> Response:
        """The dry run of /api/owners: what loading the body would change (vehicle_ingest.owners.plan_registry)."""
        rows = await self._registry_rows(body)
        if isinstance(rows, Response):
            return rows
        return Response.json(200, await self.run_store(plan_registry, self._store, rows))

    async def _registry_rows(self, body: bytes) -> list[Ownership] | Response:
        """Parsed off the loop (an .xlsx of a million rows takes seconds) and off the store's thread;
        refused: 400 with `problems`, one per bad row, and `error`, the same joined by newlines."""
        try:
            return await asyncio.to_thread(parse_registry, body, "request body")
        except ConfigError as exc:
            problems = [str(e) for e in getattr(exc, "errors", [exc])]
            return Response.json(400, {"error": "\n".join(problems), "problems": problems})

    async def _erase_route(self, body: bytes) -> Response:
        """`{"owner": ID}` or `{"vin": VIN}`, optional `"dry_run": true`: delete their rows everywhere
        (vehicle_ingest.privacy); 404 when the store holds no row of them."""
        request = json.loads(body or b"{}")
        target = ErasureTarget(owner=str(request.get("owner") or ""), vin=str(request.get("vin") or ""))
        dry_run = request.get("dry_run") is True
        try:
            # Not during a tag cycle: its later slices would write the erased owner's changes back.
            async with self._tag_lock:
                erasure = await self.run_store(lambda: delete_rows(self._store, target, dry_run=dry_run))
        except UnknownErasureTargetError as exc:
            return Response.json(404, {"error": str(exc)})
        await self._until_removed(erasure)
        return Response.json(200, {"would_erase" if dry_run else "erased": erasure.found})

    async def _until_removed(self, erasure: Erasure) -> None:
        """Wait for the replaced parts holding the erased rows to leave the disk, one short check at a time:
        ingestion keeps the store thread in between (a server keeps them old_parts_lifetime, 480 s)."""
        deadline = time.monotonic() + ERASE_WAIT_S
        while left := await self.run_store(replaced_parts_left, self._store, erasure):
            if time.monotonic() >= deadline:
                raise ErasureIncompleteError(sorted(left), ERASE_WAIT_S)
            await asyncio.sleep(0.1)

    async def _quarantine_route(self, body: bytes) -> Response:
        """Optional `{"sink": NAME}`: the changes sinks refused, oldest first."""
        sink = json.loads(body or b"{}").get("sink") or None
        held = await self.run_store(self._quarantine.entries, sink)
        return Response.json(200, {"quarantined": [q.to_json() for q in held]})

    async def _release_route(self, body: bytes) -> Response:
        """`{"message_ids": [...]}` or `{"all": true}`, optional `"sink"`: make them pending again, deliver now."""
        try:
            message_ids, sink = _release_request(json.loads(body or b"{}"))
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})
        released = await self.run_store(self._quarantine.release, message_ids, sink)
        if released:
            await self._outbox_changed()
        missing = sorted(set(message_ids or []) - {q.message_id for q in released})
        shown = [{"message_id": q.message_id, "sink": q.sink} for q in released]
        return Response.json(200, {"released": shown, "not_quarantined": missing})


def _release_request(request: Any) -> tuple[list[str] | None, str | None]:
    """(message ids, or None for all; sink or None) from a release request body; ValueError if malformed."""
    if not isinstance(request, dict):
        raise ValueError('expected {"message_ids": [...]} or {"all": true}')
    ids, everything, sink = request.get("message_ids") or [], request.get("all") is True, request.get("sink")
    if not isinstance(ids, list) or not all(isinstance(m, str) and m for m in ids):
        raise ValueError("message_ids must be a list of message id strings")
    if bool(ids) == everything:
        raise ValueError("give message_ids or all: true (exactly one)")
    if sink is not None and not isinstance(sink, str):
        raise ValueError("sink must be a sink name (string)")
    return (None if everything else ids), (sink or None)


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
    disable_created_metrics()  # no *_created series: Prometheus ignores them, dashboards trip over them
    _check_port_free(config.http_host, config.http_port)  # before a new store is created and migrated
    store = Store.open(config.store)
    log.info("store %s", redact(store.dsn))
    applied = store.migrate()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    if set_location_retention(store, config.location_retention_days, load_signal_catalog()):
        log.info("raw location now expires after %d days", config.location_retention_days)
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
