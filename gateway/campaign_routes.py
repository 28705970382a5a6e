"""The campaign routes: exposures in (`POST /api/exposures`), uplift out (`GET|POST /api/campaigns`).

Same guard, body limit and read timeout as every /api route (gateway.http). Exposures are parsed off
the event loop and off the store thread, then stored on the store thread in one short step; the
uplift is a read, on a read session.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from vehicle_ingest.campaigns import (
    ParsedExposures,
    campaign_results,
    load_campaign_definitions,
    parse_exposure_body,
    save_exposures,
)
from vehicle_ingest.gateway.http import Handler, Response
from vehicle_ingest.gateway.jobs import Jobs
from vehicle_ingest.reads import ReadSession
from vehicle_ingest.storage import Store

__all__ = ["CampaignRoutes"]

Runner = Callable[..., Awaitable[Any]]
ReadRunner = Callable[[Callable[[ReadSession], Any]], Awaitable[Any]]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CampaignRoutes:
    def __init__(
        self, store: Store, registry: CollectorRegistry, jobs: Jobs, run_store: Runner, run_read: ReadRunner
    ) -> None:
        self._store, self._jobs, self._run_store, self._run_read = store, jobs, run_store, run_read
        # Loaded at start: a campaign naming an unknown tag stops the gateway with that reason, not a request later.
        self._campaigns = load_campaign_definitions(jobs.cycle.definitions)
        self._names = jobs.config.exposure_names
        self._exposures = Counter(
            "vehicle_ingest_exposures_total",
            "Campaign exposure events received, by outcome (stored, duplicate, ignored: another event, refused)",
            ["outcome"],
            registry=registry,
        )
        self._refused = Counter(
            "vehicle_ingest_exposures_refused_total", "Exposure events refused, by reason", ["reason"],
            registry=registry,
        )  # fmt: skip

    def table(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/api/exposures"): self._exposures_route,
            ("GET", "/api/campaigns"): self._campaigns_route,
            ("POST", "/api/campaigns"): self._campaigns_route,
        }

    async def _exposures_route(self, body: bytes) -> Response:
        """Segment `track` events (one, a list, or `{"batch": [...]}`), Sensors events (a list or one per line),
        or `{"exposures": [flat rows]}`: 200 with what was stored and every refused event's reason; 400 when
        the body is not JSON at all."""
        parsed: ParsedExposures = await asyncio.to_thread(parse_exposure_body, body, self._names, _now_ms())
        saved = await self._run_store(save_exposures, self._store, parsed.exposures)
        counts = {"stored": saved.stored, "duplicate": saved.duplicates, "ignored": parsed.ignored}
        for outcome, n in {**counts, "refused": len(parsed.refused)}.items():
            self._exposures.labels(outcome).inc(n)
        for refusal in parsed.refused:
            self._refused.labels(refusal.reason).inc()
        return Response.json(200, {"stored": saved.stored, "duplicates": saved.duplicates, **parsed.summary()})

    async def _campaigns_route(self, body: bytes) -> Response:
        """Optional `{"as_of_ms": N}`: every campaign of schemas/campaigns.toml, measured as of then."""
        request = json.loads(body or b"{}")
        as_of_ms = request.get("as_of_ms") if isinstance(request, dict) else None
        if as_of_ms is None:
            as_of_ms = _now_ms()
        if not isinstance(as_of_ms, int) or isinstance(as_of_ms, bool) or as_of_ms < 0:
            raise ValueError("as_of_ms must be a whole number >= 0 (ms since the Unix epoch)")
        results = await self._run_read(lambda session: campaign_results(session, self._campaigns, as_of_ms))
        return Response.json(200, results)
