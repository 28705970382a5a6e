"""`vehicle-ingest simulate --campaigns`: a fleet published phase by phase, with the marketing side in between.

Time is played forward as a deployment lives it: the fleet's owners are loaded (as a CRM would), then
for each tag cycle of the simulation (`CampaignFleet.cycles`) the messages sent before it are
published and settled, the gateway runs its tag cycle as of that instant (`POST /api/tags/run`), and on
a send day the campaign's exposures are posted to `POST /api/exposures` as a Segment-compatible CDP
would. A last cycle runs as of the end, after the rest of the fleet is published: trips and cockpit use of
every window are then folded in. `--truth` gains each campaign's true uplift (simulators/campaigns.py).
"""

from __future__ import annotations

import argparse
import bisect
import json
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from vehicle_ingest.gateway.cli_support import api

__all__ = ["simulate_campaigns"]


def _registry_csv(rows: Any) -> bytes:
    from vehicle_ingest.owners import write_registry

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "owners.csv"
        write_registry(path, rows)
        return path.read_bytes()


def _sum(parts: list[Any]) -> Any:
    """Totals of the phases, one publish each."""
    from vehicle_ingest.simulators.publisher import PublishTotals

    totals = PublishTotals()
    for part in parts:
        for f in fields(PublishTotals):
            if f.name not in ("by_mid", "interrupted"):
                setattr(totals, f.name, getattr(totals, f.name) + getattr(part, f.name))
        totals.interrupted |= part.interrupted
    return totals


def simulate_campaigns(
    args: argparse.Namespace,
    spec: Any,
    publish: Callable[[list[Any], argparse.Namespace], Any],
    finish: Callable[[dict[str, Any], dict[str, Any] | None, argparse.Namespace, int], int],
) -> int:
    from vehicle_ingest.campaigns import load_campaign_definitions
    from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
    from vehicle_ingest.owners import write_registry
    from vehicle_ingest.simulators.campaigns import CampaignFleet
    from vehicle_ingest.simulators.truth import truth_document
    from vehicle_ingest.tags import load_tag_definitions

    tags = load_tag_definitions()
    world = CampaignFleet(spec, load_signal_catalog(), load_event_catalog(), tags, load_campaign_definitions(tags))
    if args.owners:
        write_registry(Path(args.owners), world.fleet.ownership)
    api(args, "/api/owners", _registry_csv(world.fleet.ownership))
    messages, sends = world.messages(), world.send_instants()
    times = [m.sim_ts for m in messages]
    parts, done, posted = [], 0, {}
    for cycle in [*world.cycles, spec.end_ms]:  # the last: the rest of the fleet, after every window closed
        upto = bisect.bisect_left(times, cycle)  # what the head units had sent before the cycle
        if upto > done:
            parts.append(publish(messages[done:upto], args))
            done = upto
            if parts[-1].interrupted:
                break
        api(args, "/api/tags/run", json.dumps({"as_of_ms": cycle}).encode())
        for sent in sends.get(cycle, []):
            answer = api(args, "/api/exposures", json.dumps(sent.segment_batch()).encode())
            posted[sent.definition.id] = {k: answer[k] for k in ("stored", "duplicates", "refused")}
    totals = _sum(parts)
    summary = {**totals.as_dict(), "campaigns": posted}
    truth = None if totals.interrupted else truth_document(world.fleet, tags, spec.end_ms)
    if truth is not None:
        truth["campaigns"] = world.truth()
    return finish(summary, truth, args, totals.failed)
