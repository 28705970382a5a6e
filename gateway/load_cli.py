"""`vehicle-ingest load`: a large simulated fleet at a controlled message rate (see simulators/load.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from vehicle_ingest.errors import ConfigError, VehicleIngestError
from vehicle_ingest.gateway.cli_support import count, fraction, positive

__all__ = ["add_load_parser", "add_receipt_flags", "broker_unreachable"]

EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def broker_unreachable(url: str) -> Iterator[None]:
    """A broker that refuses or never answers the connection: one line naming it, not a traceback."""
    try:
        yield
    except (ConnectionError, OSError) as exc:
        raise VehicleIngestError(f"cannot reach the broker at {url}: {exc} (is it running? check --mqtt-url)") from exc


def _load(args: argparse.Namespace) -> int:
    from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
    from vehicle_ingest.simulators.load import LoadSpec, run_load

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
        raise ConfigError("load", str(exc)) from exc
    print(
        f"{spec.vehicles:,} vehicles, {spec.rate:,.0f} msg/s (one per vehicle every {spec.period_s:.2f} s),"
        f" {spec.samples_per_message} samples/msg = {spec.rate * spec.samples_per_message:,.0f} samples/s offered",
        file=sys.stderr,
    )
    progress = None if args.quiet else sys.stderr
    with broker_unreachable(args.mqtt_url):
        result = run_load(spec, args.mqtt_url, load_signal_catalog(), load_event_catalog(), progress)
    summary = result.as_dict()
    if args.truth:  # after Ctrl-C too: exactly what settled until then
        Path(args.truth).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    if result.totals.interrupted:
        return EXIT_INTERRUPTED
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
        "--receipt-timeout",
        type=positive,
        default=30.0,
        help="resend a message not receipted after this many seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=fraction,
        default=60.0,
        help="after the last publish, wait this long for receipts (default: %(default)s)",
    )


def add_load_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("load", help="load test: a large fleet at a target message rate, receipt-counted")
    p.add_argument("--vehicles", type=count, default=10_000, help="vehicles in the fleet (default: %(default)s)")
    p.add_argument(
        "--rate", type=positive, default=2_000.0, help="signal messages per second, whole fleet (default: %(default)s)"
    )
    p.add_argument("--hz", type=positive, default=10.0, help="samples per second per signal (default: %(default)s)")
    p.add_argument("--signals", type=count, default=10, help="signals per message, 1-12 (default: %(default)s)")
    p.add_argument(
        "--duration", type=positive, default=60.0, help="wall-clock seconds of publishing (default: %(default)s)"
    )
    p.add_argument(
        "--connections", type=count, default=4, help="MQTT connections the fleet shares (default: %(default)s)"
    )
    p.add_argument("--per-vehicle", action="store_true", help="one MQTT connection per vehicle instead")
    p.add_argument(
        "--events-per-hour", type=fraction, default=6.0, help="cockpit events per vehicle per hour (default: 6)"
    )
    p.add_argument("--seed", type=int, default=7, help="the fleet is a function of the seed (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--truth", help="write what was settled (receipts, or PUBACKs with --no-receipts) to this file")
    add_receipt_flags(p)
    p.add_argument(
        "--mqtt-url",
        default=os.environ.get("VI_MQTT_URL", "mqtt://127.0.0.1:1883"),
        help="the broker (env VI_MQTT_URL; default: %(default)s)",
    )
    p.set_defaults(func=_load)
