"""The gateway's HTTP routes: Prometheus and probes in the open, the rest under /api (token).

Reads run on the read sessions (`run_read`), never on the ingest path; writes (owners, erase,
quarantine release) take the store thread one short step at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from vehicle_ingest.cdp import Quarantine
from vehicle_ingest.errors import ConfigError, ErasureIncompleteError, UnknownErasureTargetError
from vehicle_ingest.gateway.campaign_routes import CampaignRoutes
from vehicle_ingest.gateway.http import Handler, Response
from vehicle_ingest.gateway.jobs import Jobs
from vehicle_ingest.owners import Ownership, parse_registry, plan_registry, save_registry
from vehicle_ingest.privacy import ERASE_WAIT_S, Erasure, ErasureTarget, delete_rows, replaced_parts_left
from vehicle_ingest.reads import ReadSession
from vehicle_ingest.storage import Store, fleet_stats

__all__ = ["PUBLIC_ROUTES", "Routes"]

PUBLIC_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})  # Prometheus and probes; the rest is /api
Runner = Callable[..., Awaitable[Any]]
ReadRunner = Callable[[Callable[[ReadSession], Any]], Awaitable[Any]]


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


class Routes:
    def __init__(
        self,
        store: Store,
        registry: CollectorRegistry,
        jobs: Jobs,
        run_store: Runner,
        run_read: ReadRunner,
        readiness: Callable[[], dict[str, bool]],
    ) -> None:
        self._store = store
        self._registry = registry
        self._jobs = jobs
        self._run_store = run_store
        self._run_read = run_read
        self._readiness = readiness
        self._quarantine = Quarantine(store)
        self._campaigns = CampaignRoutes(store, registry, jobs, run_store, run_read)

    def table(self) -> dict[tuple[str, str], Handler]:
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
            **self._campaigns.table(),
        }

    async def _metrics_route(self, _body: bytes) -> Response:
        return Response(200, generate_latest(self._registry), "text/plain; version=0.0.4; charset=utf-8")

    async def _healthz(self, _body: bytes) -> Response:
        return Response.json(200, {"status": "alive"})

    async def _readyz(self, _body: bytes) -> Response:
        checks = self._readiness()
        return Response.json(200 if all(checks.values()) else 503, {"ready": all(checks.values()), **checks})

    async def _report_route(self, body: bytes) -> Response:
        """The report's data as JSON (the CLI draws the charts): `{"as_of_ms": N, "days": D}`."""
        from vehicle_ingest.report.queries import fetch_report_data

        request = json.loads(body or b"{}")
        as_of_ms, days = _int_field(request, "as_of_ms", _now_ms()), _int_field(request, "days", 90)
        data = await self._run_read(lambda session: fetch_report_data(session, as_of_ms, days).to_json())
        return Response.json(200, data)

    async def _audience_route(self, body: bytes) -> Response:
        """`{"tag": ID, "as_of_ms": N}`: the owners holding the tag, since when and why."""
        from vehicle_ingest.report.audience import audience

        request = json.loads(body or b"{}")
        tag, as_of_ms = str(request.get("tag", "")), _int_field(request, "as_of_ms", _now_ms())
        known = frozenset(d.id for d in self._jobs.cycle.definitions)
        members = await self._run_read(lambda session: audience(session, tag, as_of_ms, known))
        rows = [{"owner_id": m.owner_id, "since_ms": m.since_ms, "evidence": m.evidence} for m in members]
        return Response.json(200, {"tag": tag, "members": rows})

    async def _stats_route(self, _body: bytes) -> Response:
        return Response.json(200, await self._run_read(fleet_stats))

    async def _sql_route(self, body: bytes) -> Response:
        text = body.decode("utf-8")  # not UTF-8: a 400 naming the byte
        return Response(200, await self._run_read(lambda session: session.run(text).to_json()), "application/json")

    async def _tags_show_route(self, body: bytes) -> Response:
        return Response.json(200, await self._jobs.show_tags(_as_of(body)))

    async def _tags_run_route(self, body: bytes) -> Response:
        return Response.json(200, await self._jobs.run_tag_cycle(_as_of(body)))

    async def _owners_route(self, body: bytes) -> Response:
        """The body is the registry file (CSV, JSON or .xlsx bytes): load it whole, or 400 naming every problem."""
        rows = await self._registry_rows(body)
        if isinstance(rows, Response):
            return rows
        return Response.json(200, {"loaded": await self._run_store(save_registry, self._store, rows)})

    async def _owners_check_route(self, body: bytes) -> Response:
        """The dry run of /api/owners: what loading the body would change (vehicle_ingest.owners.plan_registry)."""
        rows = await self._registry_rows(body)
        if isinstance(rows, Response):
            return rows
        return Response.json(200, await self._run_store(plan_registry, self._store, rows))

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
            async with self._jobs.tag_lock:
                erasure = await self._run_store(lambda: delete_rows(self._store, target, dry_run=dry_run))
        except UnknownErasureTargetError as exc:
            return Response.json(404, {"error": str(exc)})
        await self._until_removed(erasure)
        return Response.json(200, {"would_erase" if dry_run else "erased": erasure.found})

    async def _until_removed(self, erasure: Erasure) -> None:
        """Wait for the replaced parts holding the erased rows to leave the disk, one short check at a time:
        ingestion keeps the store thread in between (a server keeps them old_parts_lifetime, 480 s)."""
        deadline = time.monotonic() + ERASE_WAIT_S
        while left := await self._run_store(replaced_parts_left, self._store, erasure):
            if time.monotonic() >= deadline:
                raise ErasureIncompleteError(sorted(left), ERASE_WAIT_S)
            await asyncio.sleep(0.1)

    async def _quarantine_route(self, body: bytes) -> Response:
        """Optional `{"sink": NAME}`: the changes sinks refused, oldest first."""
        sink = json.loads(body or b"{}").get("sink") or None
        held = await self._run_store(self._quarantine.entries, sink)
        return Response.json(200, {"quarantined": [q.to_json() for q in held]})

    async def _release_route(self, body: bytes) -> Response:
        """`{"message_ids": [...]}` or `{"all": true}`, optional `"sink"`: make them pending again, deliver now."""
        try:
            message_ids, sink = _release_request(json.loads(body or b"{}"))
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})
        released = await self._run_store(self._quarantine.release, message_ids, sink)
        if released:
            await self._jobs.outbox_changed()
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
