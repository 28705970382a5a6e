"""`vehicle-ingest simulate`: a deterministic fleet published as receipt-aware head units, with its truth.

A progress line a second goes to stderr, the summary (one JSON object) to stdout. Ctrl-C stops
publishing: the summary and `--truth` then hold exactly what was settled until then, marked
`"interrupted": true`, and the command exits 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

from vehicle_ingest.gateway.cli_support import count, fraction, now_ms, positive
from vehicle_ingest.gateway.load_cli import add_receipt_flags, broker_unreachable

__all__ = ["EXIT_INTERRUPTED", "add_simulate_parser"]

log = logging.getLogger("vehicle_ingest")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def add_simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="publish a simulated fleet (and write its truth)")
    sim.add_argument("--vehicles", type=count, default=10, help="vehicles in the fleet (default: %(default)s)")
    sim.add_argument(
        "--duration", type=positive, default=3600.0, help="simulated seconds, ending now (default: %(default)s)"
    )
    sim.add_argument(
        "--speedup",
        type=fraction,
        default=0.0,
        help="pace at this multiple of simulated time; 0 = as fast as the broker acks (default: %(default)s)",
    )
    sim.add_argument("--sample-hz", type=positive, default=1.0, help="samples per second per signal (default: 1)")
    sim.add_argument(
        "--message-s", type=positive, default=60.0, help="simulated seconds per signal message (default: %(default)s)"
    )
    sim.add_argument("--seed", type=int, default=1, help="the fleet is a function of the seed (default: %(default)s)")
    sim.add_argument("--connections", type=count, default=1, help="MQTT connections to publish over (default: 1)")
    sim.add_argument("--end-ms", type=int, default=None, help="end of the simulated window, ms (default: now)")
    sim.add_argument("--truth", help="write what was settled, the expected tags and trips to this JSON file")
    sim.add_argument("--owners", help="write the fleet's owner registry (CSV) to this file")
    sim.add_argument("--duplicate-shuffle", action="store_true", help="send a fifth twice, out of order")
    sim.add_argument(
        "--can", action="store_true", help="raw CAN frames (stream `can`) encoded from schemas/can's DBC, one trip each"
    )
    sim.add_argument(
        "--mqtt-url",
        default=os.environ.get("VI_MQTT_URL", "mqtt://127.0.0.1:1883"),
        help="the broker (env VI_MQTT_URL; default: %(default)s)",
    )
    sim.add_argument(
        "--campaigns",
        action="store_true",
        help="also run the marketing side (simulators/campaigns.py): load the owners, run the tag engine on chosen"
        " days and post campaign exposures to --gateway as a CDP would; --truth gets each campaign's true uplift."
        " Run that gateway with --tags-interval-s 0: this command decides when its tag cycles run",
    )
    sim.add_argument(
        "--gateway",
        default=os.environ.get("VI_GATEWAY_URL", "http://127.0.0.1:9108"),
        help="the gateway's HTTP API, for --campaigns (env VI_GATEWAY_URL; default: %(default)s)",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress lines")
    add_receipt_flags(sim)
    sim.set_defaults(func=_simulate)


def _publish_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "speedup": args.speedup,
        "connections": args.connections,
        "receipts": args.receipts,
        "receipt_timeout_s": args.receipt_timeout,
        "settle_timeout_s": args.settle_timeout,
        "progress": None if args.quiet else sys.stderr,
    }


def _publish(messages: list[Any], args: argparse.Namespace) -> Any:
    from vehicle_ingest.simulators.publisher import publish

    with broker_unreachable(args.mqtt_url):
        return publish(messages, args.mqtt_url, **_publish_options(args))


def _finish(summary: dict[str, Any], truth: dict[str, Any] | None, args: argparse.Namespace, failed: int) -> int:
    if args.truth:
        Path(args.truth).write_text(json.dumps({**summary, **(truth or {})}, indent=1) + "\n")
    print(json.dumps(summary))
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    return 0 if failed == 0 else 1


def _simulate_can(args: argparse.Namespace, end_ms: int) -> int:
    from vehicle_ingest.catalog import load_signal_catalog
    from vehicle_ingest.simulators.can import CanFleetSpec, simulate_can_fleet

    spec = CanFleetSpec(args.vehicles, end_ms - int(args.duration * 1000), args.duration, args.seed, args.message_s)
    messages, truth = simulate_can_fleet(spec, load_signal_catalog())
    totals = _publish(messages, args)
    return _finish(totals.as_dict() | {"can": truth.as_dict()}, None, args, totals.failed)


def _spec(args: argparse.Namespace, end_ms: int) -> Any:
    from vehicle_ingest.simulators.fleet import FleetSpec

    return FleetSpec(
        vehicles=args.vehicles,
        start_ms=end_ms - int(args.duration * 1000),
        duration_s=args.duration,
        sample_hz=args.sample_hz,
        seed=args.seed,
        message_s=args.message_s,
    )


def _simulate(args: argparse.Namespace) -> int:
    from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
    from vehicle_ingest.moments import load_moment_definitions
    from vehicle_ingest.owners import write_registry
    from vehicle_ingest.simulators.fleet import simulate_fleet
    from vehicle_ingest.simulators.truth import truth_document
    from vehicle_ingest.tags.definitions import load_tag_definitions

    end_ms = now_ms() if args.end_ms is None else args.end_ms
    if args.can:
        return _simulate_can(args, end_ms)
    if args.campaigns:
        from vehicle_ingest.gateway.campaign_sim import simulate_campaigns

        return simulate_campaigns(args, _spec(args, end_ms), _publish, _finish)
    signals, events = load_signal_catalog(), load_event_catalog()
    fleet = simulate_fleet(_spec(args, end_ms), signals, events)
    log.info("simulated %d messages for %d vehicles", len(fleet.messages), args.vehicles)
    if args.owners:
        write_registry(Path(args.owners), fleet.ownership)
    messages = _duplicated_and_shuffled(fleet.messages, args.seed) if args.duplicate_shuffle else fleet.messages
    totals = _publish(messages, args)
    summary = totals.as_dict()
    if args.duplicate_shuffle and not totals.interrupted:  # the truth is the distinct messages, not the copies
        summary.update(_distinct_totals(fleet.messages))
    # Expected tags and trips hold for the whole fleet only: an interrupted run's truth is its counts.
    moments = load_moment_definitions(signals, events)
    truth = None if totals.interrupted else truth_document(fleet, load_tag_definitions(), end_ms, moments)
    return _finish(summary, truth, args, totals.failed)


def _duplicated_and_shuffled(messages: list[Any], seed: int) -> list[Any]:
    """Every message once, a fifth of them twice, in a locally shuffled order (late and out of order)."""
    rng = random.Random(seed)
    doubled = list(messages) + [m for m in messages if rng.random() < 0.2]
    keys = [i + rng.uniform(-500, 500) for i in range(len(doubled))]
    keys[len(messages) :] = [rng.uniform(0, len(messages)) for _ in doubled[len(messages) :]]
    return [m for _, m in sorted(zip(keys, doubled, strict=True), key=lambda x: x[0])]


def _distinct_totals(messages: list[Any]) -> dict[str, Any]:
    return {
        "messages": len(messages),
        "samples": sum(m.samples for m in messages),
        "events": sum(m.events for m in messages),
        "value_sum": sum(m.value_sum for m in messages),
    }
