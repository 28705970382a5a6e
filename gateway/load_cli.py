"""`vehicle-ingest load`: a large simulated fleet at a controlled message rate (see simulators/load.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["add_load_parser", "add_receipt_flags"]


def _load(args: argparse.Namespace) -> int:
    from vehicle_ingest.simulators.load import LoadSpec, run_load

    from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog

    spec = LoadSpec(
        vehicles=args.vehicles,
        rate=args.rate,
        hz=args.hz,
        signals=args.signals,
        duration_s=args.duration,
        connections=args.connections,
        per_vehicle=args.per_vehicle,
        events_per_hour=args.events_per_hour,
        seed=args.seed,
        receipts=args.receipts,
        receipt_timeout_s=args.receipt_timeout,
        settle_timeout_s=args.settle_timeout,
    )
    try:
        spec.check()
    except ValueError as exc:
        print(f"vehicle-ingest load: {exc}", file=sys.stderr)
        return 2
    print(
        f"{spec.vehicles:,} vehicles, {spec.rate:,.0f} msg/s (one per vehicle every {spec.period_s:.2f} s),"
        f" {spec.samples_per_message} samples/msg = {spec.rate * spec.samples_per_message:,.0f} samples/s offered",
        file=sys.stderr,
    )
    progress = None if args.quiet else sys.stderr
    result = run_load(spec, args.mqtt_url, load_signal_catalog(), load_event_catalog(), progress)
    summary = result.as_dict()
    if args.truth:
        Path(args.truth).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0 if result.totals.failed == 0 else 1


def add_receipt_flags(parser: argparse.ArgumentParser) -> None:
    """Head-unit behaviour of the simulators: keep every message until a gateway receipt covers it."""
    parser.add_argument(
        "--receipts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count what gateway receipts settle and resend what they do not cover, as head units do;"
        " --no-receipts counts broker PUBACKs (default: %(default)s)",
    )
    parser.add_argument(
        "--receipt-timeout", type=float, default=30.0, help="resend a message not receipted after this many seconds"
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=60.0, help="after the last publish, wait this long for receipts"
    )


def add_load_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("load", help="load test: a large fleet at a target message rate, PUBACK-counted")
    p.add_argument("--vehicles", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=2_000.0, help="signal messages per second, whole fleet")
    p.add_argument("--hz", type=float, default=10.0, help="samples per second per signal")
    p.add_argument("--signals", type=int, default=10, help="signals per message (1-12)")
    p.add_argument("--duration", type=float, default=60.0, help="wall-clock seconds of publishing")
    p.add_argument("--connections", type=int, default=4, help="MQTT connections the fleet is multiplexed over")
    p.add_argument("--per-vehicle", action="store_true", help="one MQTT connection per vehicle instead")
    p.add_argument("--events-per-hour", type=float, default=6.0, help="cockpit events per vehicle per hour")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--truth", help="write what was settled (receipts, or PUBACKs with --no-receipts) to this file")
    add_receipt_flags(p)
    p.add_argument("--mqtt-url", default=os.environ.get("VI_MQTT_URL", "mqtt://127.0.0.1:1883"))
    p.set_defaults(func=_load)
