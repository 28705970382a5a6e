"""Load generator: a large fleet publishing realistic signal batches at a controlled rate.

Every vehicle samples `signals` signals at `hz` and publishes one batch per
period, so the fleet sends `rate` signal messages per second
(period = vehicles / rate) and a few cockpit events per hour. The last sample of
each batch is stamped with the wall-clock time of its publish, so the
gateway's end-to-end lag histogram measures publish → stored.

Bodies are encoded once into a pool and reused with a fresh header
(VIN, seq, base_ts): the body's timestamps are relative to base_ts, so this
is byte for byte what an encoder would produce, and it keeps the generator's
own CPU small on a machine it shares with the broker and the gateway.

The truth counts only what the broker acknowledged (PUBACK).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.simulators.fleet import SimMessage
from vehicle_ingest.simulators.load_fleet import MAX_SIGNALS, BodyPool, LoadFleet, LoadResult, LoadSpec
from vehicle_ingest.simulators.many_connections import publish_per_vehicle
from vehicle_ingest.simulators.progress import Progress
from vehicle_ingest.simulators.publisher import PublisherPool

__all__ = ["MAX_SIGNALS", "BodyPool", "LoadFleet", "LoadResult", "LoadSpec", "run_load"]


def _schedule(spec: LoadSpec, send: Callable[[int, SimMessage], None], fleet: LoadFleet, progress: Progress) -> None:
    """Message j goes out at start + j/rate from vehicle j mod vehicles; events interleave at their rate.

    `progress.sent` counts what went out, also when Ctrl-C ends the loop early.
    """
    event_rate = spec.vehicles * spec.events_per_hour / 3600.0
    started = time.monotonic()
    total = int(spec.duration_s * spec.rate)
    events_sent = 0
    for j in range(total):
        due = started + j / spec.rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        vehicle = j % spec.vehicles
        send(vehicle, fleet.signal_message(vehicle, j // spec.vehicles))
        progress.sent += 1
        while events_sent < (time.monotonic() - started) * event_rate:
            vehicle = int(fleet.rng.integers(spec.vehicles))
            send(vehicle, fleet.event_message_for(vehicle))
            events_sent += 1
            progress.sent += 1
        progress.tick(progress.sent)


def run_load(
    spec: LoadSpec, url: str, signals: SignalCatalog, events: EventCatalog, progress: TextIO | None = sys.stderr
) -> LoadResult:
    """Publish for `spec.duration_s`, then wait for PUBACKs (and receipts): the totals count only settled messages.

    Ctrl-C ends it early with the totals of what settled until then (`totals.interrupted`).
    """
    spec.check()
    fleet = LoadFleet(spec, signals, events)
    if spec.per_vehicle:
        return asyncio.run(_run_per_vehicle(spec, url, fleet, progress))
    pool = PublisherPool(
        url, "vi-load", min(spec.connections, spec.vehicles), spec.inflight, spec.receipts, spec.receipt_timeout_s
    )
    bar = Progress(progress, pool.settled_so_far)
    totals = pool.run(lambda: _schedule(spec, pool.send, fleet, bar), spec.settle_timeout_s)
    bar.tick(bar.sent, force=True)
    return LoadResult(totals, bar.sent, spec.rate, spec.samples_per_message, len(pool.pubs))


async def _run_per_vehicle(spec: LoadSpec, url: str, fleet: LoadFleet, progress: TextIO | None) -> LoadResult:
    return await publish_per_vehicle(spec, url, fleet, progress)
