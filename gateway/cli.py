"""`vehicle-ingest` command line: gateway, config, simulate, stats, sql, tags, owners, erase, cdp, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vehicle_ingest.gateway.config import env_name
from vehicle_ingest.gateway.logs import add_log_flags, configure_logging, default_format

from vehicle_ingest.errors import ConfigError, QueryRefusedError, VehicleIngestError

__all__ = ["main"]

T = TypeVar("T")
log = logging.getLogger("vehicle_ingest")


def _gateway(args: argparse.Namespace) -> int:
    from vehicle_ingest.gateway.config import resolve_layers
    from vehicle_ingest.gateway.config_render import shown_settings
    from vehicle_ingest.gateway.service import run_gateway

    resolved = resolve_layers(args)
    settings = shown_settings(resolved.config)
    log.info("configuration", extra={"config_file": resolved.file, "settings": settings, "origins": resolved.origins})
    return run_gateway(resolved.config)


def _simulate_can(args: argparse.Namespace, end_ms: int) -> int:
    from vehicle_ingest.simulators.can import CanFleetSpec, simulate_can_fleet
    from vehicle_ingest.simulators.publisher import publish

    from vehicle_ingest.catalog import load_signal_catalog

    spec = CanFleetSpec(args.vehicles, end_ms - int(args.duration * 1000), args.duration, args.seed, args.message_s)
    messages, truth = simulate_can_fleet(spec, load_signal_catalog())
    totals = publish(messages, args.mqtt_url, **_publish_options(args))
    summary = totals.as_dict() | {"can": truth.as_dict()}
    if args.truth:
        Path(args.truth).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0 if totals.failed == 0 else 1


def _simulate(args: argparse.Namespace) -> int:
    from vehicle_ingest.simulators.fleet import FleetSpec, simulate_fleet
    from vehicle_ingest.simulators.publisher import publish
    from vehicle_ingest.simulators.truth import truth_document

    from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
    from vehicle_ingest.owners import write_registry
    from vehicle_ingest.tags.definitions import load_tag_definitions

    end_ms = time.time_ns() // 1_000_000 if args.end_ms is None else args.end_ms
    if args.can:
        return _simulate_can(args, end_ms)
    spec = FleetSpec(
        vehicles=args.vehicles,
        start_ms=end_ms - int(args.duration * 1000),
        duration_s=args.duration,
        sample_hz=args.sample_hz,
        seed=args.seed,
        message_s=args.message_s,
    )
    fleet = simulate_fleet(spec, load_signal_catalog(), load_event_catalog())
    log.info("simulated %d messages for %d vehicles", len(fleet.messages), args.vehicles)
    if args.owners:
        write_registry(Path(args.owners), fleet.ownership)
    messages = fleet.messages
    if args.duplicate_shuffle:
        messages = _duplicated_and_shuffled(messages, args.seed)
    totals = publish(messages, args.mqtt_url, **_publish_options(args))
    summary = totals.as_dict()
    if args.duplicate_shuffle:  # what the broker acked counts copies; the truth is the distinct messages
        summary.update(_distinct_totals(fleet.messages))
    if args.truth:
        document = {**summary, **truth_document(fleet, load_tag_definitions(), end_ms)}
        Path(args.truth).write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(summary))
    return 0 if totals.failed == 0 else 1


def _publish_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "speedup": args.speedup,
        "connections": args.connections,
        "receipts": args.receipts,
        "receipt_timeout_s": args.receipt_timeout,
        "settle_timeout_s": args.settle_timeout,
    }


def _duplicated_and_shuffled(messages: list, seed: int) -> list:
    """Every message once, a fifth of them twice, in a locally shuffled order (late and out of order)."""
    import random

    rng = random.Random(seed)
    doubled = list(messages) + [m for m in messages if rng.random() < 0.2]
    keys = [i + rng.uniform(-500, 500) for i in range(len(doubled))]
    keys[len(messages) :] = [rng.uniform(0, len(messages)) for _ in doubled[len(messages) :]]
    return [m for _, m in sorted(zip(keys, doubled, strict=True), key=lambda x: x[0])]


def _distinct_totals(messages: list) -> dict:
    return {
        "messages": len(messages),
        "samples": sum(m.samples for m in messages),
        "events": sum(m.events for m in messages),
        "value_sum": sum(m.value_sum for m in messages),
    }


class GatewayError(VehicleIngestError):
    """The gateway answered an /api request with an error; `status` is its HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _http_json(url: str, body: bytes | None = None, timeout_s: float = 120) -> Any:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if token := os.environ.get(env_name("api_token")):  # the gateway's /api needs it unless on loopback
        request.add_unredirected_header("Authorization", f"Bearer {token}")  # not sent on to a redirect
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ConfigError("api_token", f"{url} refused the request: set {env_name('api_token')}") from exc
        raise GatewayError(exc.code, f"{url}: {exc.code}: {_reason_of(exc.read())}") from exc


def _reason_of(body: bytes) -> str:
    """The `error` of a JSON answer, else the body's first line: what the gateway said, in one line."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip().splitlines()[0][:500] if body.strip() else "no reason given"


def _api(args: argparse.Namespace, path: str, body: bytes | None = None, timeout_s: float = 120) -> Any:
    """Ask the running gateway at --gateway."""
    return _http_json(args.gateway.rstrip("/") + path, body, timeout_s)


def _in_store(dsn: str, work: Callable[[Any], T]) -> T:
    """Open the store, bring its schema up to date, do `work` with it, close it."""
    store = _open_store(dsn)
    try:
        store.migrate()
        return work(store)
    finally:
        store.close()


def _open_store(dsn: str) -> Any:
    from vehicle_ingest.errors import StoreError
    from vehicle_ingest.storage import Store

    try:
        return Store.open(dsn)
    except StoreError as exc:
        if dsn.startswith("chdb://"):
            raise StoreError(
                f"{exc}\n(an embedded store is locked by the process using it: while the gateway"
                " runs, use --gateway http://127.0.0.1:PORT)"
            ) from exc
        raise


def _reading(args: argparse.Namespace, work: Callable[[Any], T]) -> T:
    """`work` on one read-only session with the gateway's query limits (`query_*` settings, env VI_QUERY_*)."""
    from vehicle_ingest.gateway.config import resolve
    from vehicle_ingest.gateway.service import query_limits

    from vehicle_ingest.reads import ReadSession

    limits = query_limits(resolve(argparse.Namespace()))
    session = ReadSession(_existing_store(args.store), limits)
    try:
        return work(session)
    finally:
        session.close()


def _existing_store(dsn: str) -> str:
    """A read never creates a store: an embedded path must hold one already."""
    if dsn.startswith("chdb://"):
        path = Path(dsn.removeprefix("chdb://")).resolve()
        if not path.is_dir():
            raise ConfigError("store", f"no store at {path}: give --store chdb:///path/of/the/store")
        return f"chdb://{path}"
    return dsn


def _stats(args: argparse.Namespace) -> int:
    from vehicle_ingest.storage import fleet_stats

    print(json.dumps(_api(args, "/api/stats") if args.gateway else _reading(args, fleet_stats)))
    return 0


def _sql(args: argparse.Namespace) -> int:
    if args.gateway:
        result = _api(args, "/api/sql", args.query.encode())
        names, rows = result["columns"], result["rows"]
    else:
        answer = _reading(args, lambda session: session.run(args.query))
        names, rows = answer.columns, answer.rows
    print("\t".join(names))
    for row in rows:
        print("\t".join(str(v) for v in row))
    return 0


def _tag_cycle(store: Any) -> Any:
    from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
    from vehicle_ingest.tags import TagCycle, load_tag_definitions

    return TagCycle(store, load_signal_catalog(), load_event_catalog(), load_tag_definitions())


def _tags(args: argparse.Namespace) -> int:
    now_ms = time.time_ns() // 1_000_000 if args.as_of_ms is None else args.as_of_ms
    if args.gateway:
        body = json.dumps({"as_of_ms": now_ms}).encode()
        print(json.dumps(_api(args, "/api/tags/show" if args.show else "/api/tags/run", body)))
        return 0

    def show_or_run(store: Any) -> Any:
        cycle = _tag_cycle(store)
        if args.show:
            return cycle.show(now_ms)
        report = cycle.run(now_ms)
        report["delivered"] = asyncio.run(_deliver_once(store, args.cdp))
        return report

    print(json.dumps(_in_store(args.store, show_or_run)))
    return 0


async def _deliver_once(store: Any, urls: list[str]) -> int:
    from prometheus_client import CollectorRegistry

    from vehicle_ingest.cdp import Deliverer, Outbox, sink_from_url

    if not urls:
        return 0

    async def run_store(fn: Any, *a: Any) -> Any:
        return fn(*a)

    sinks = [sink_from_url(u) for u in urls]
    return await Deliverer(Outbox(store), sinks, CollectorRegistry(), run_store).deliver_once()


def _owners(args: argparse.Namespace) -> int:
    from vehicle_ingest.owners import read_registry, save_registry

    rows = read_registry(Path(args.file))
    if args.gateway:
        print(json.dumps(_api(args, "/api/owners", Path(args.file).read_bytes())))
        return 0
    print(json.dumps({"loaded": _in_store(args.store, lambda store: save_registry(store, rows))}))
    return 0


def _erase(args: argparse.Namespace) -> int:
    """Exit 1 with one line when the store holds no row of the target (nothing is deleted then)."""
    from vehicle_ingest.privacy import ERASE_WAIT_S, ErasureTarget, erase

    target = ErasureTarget(owner=args.owner or "", vin=args.vin or "")
    if args.gateway:
        body = json.dumps({"owner": target.owner, "vin": target.vin, "dry_run": args.dry_run}).encode()
        # The gateway answers once the replaced parts are off the disk: on a server, old_parts_lifetime.
        print(json.dumps(_api(args, "/api/erase", body, timeout_s=ERASE_WAIT_S + 60)))
        return 0
    found = _in_store(args.store, lambda store: erase(store, target, dry_run=args.dry_run))
    print(json.dumps({"would_erase" if args.dry_run else "erased": found}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vehicle_ingest.gateway.demo import run_demo

    return run_demo(args)


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="vehicle-ingest", description=__doc__)
    add_log_flags(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True)

    from vehicle_ingest.gateway.config import add_arguments
    from vehicle_ingest.gateway.config_cli import add_config_commands

    gw = sub.add_parser("gateway", help="run the ingestion gateway")
    add_arguments(gw)
    gw.set_defaults(func=_gateway)
    add_config_commands(sub)

    from vehicle_ingest.gateway.report_cli import add_report_parser

    add_report_parser(sub)

    from vehicle_ingest.gateway.cdp_cli import add_cdp_parser

    add_cdp_parser(sub)

    from vehicle_ingest.gateway.load_cli import add_load_parser

    add_load_parser(sub)

    sim = sub.add_parser("simulate", help="publish a simulated fleet")
    sim.add_argument("--vehicles", type=int, default=10)
    sim.add_argument("--duration", type=float, default=3600.0, help="simulated seconds, ending now")
    sim.add_argument("--speedup", type=float, default=0.0, help="x simulated time; 0 = as fast as the broker acks")
    sim.add_argument("--sample-hz", type=float, default=1.0)
    sim.add_argument("--message-s", type=float, default=60.0, help="simulated seconds per signal message")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--connections", type=int, default=1)
    sim.add_argument("--end-ms", type=int, default=None, help="end of the simulated window (default: now)")
    sim.add_argument("--truth", help="write what the broker acknowledged, expected tags and trips to this JSON file")
    sim.add_argument("--owners", help="write the fleet's owner registry (CSV) to this file")
    sim.add_argument("--duplicate-shuffle", action="store_true", help="send a fifth twice, out of order")
    sim.add_argument(
        "--can", action="store_true", help="raw CAN frames (stream `can`) encoded from schemas/can's DBC, one trip each"
    )
    sim.add_argument("--mqtt-url", default=env("VI_MQTT_URL", "mqtt://127.0.0.1:1883"))
    from vehicle_ingest.gateway.load_cli import add_receipt_flags

    add_receipt_flags(sim)
    sim.set_defaults(func=_simulate)

    for name, func, help_text in (("stats", _stats, "what the store holds"), ("sql", _sql, "run a query")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--store", default=env("VI_STORE", "chdb://.vi-data/store"))
        p.add_argument("--gateway", default=env("VI_GATEWAY_URL"), help="ask a running gateway over HTTP")
        if name == "sql":
            p.add_argument("query")
        p.set_defaults(func=func)

    tags = sub.add_parser("tags", help="fold new data into features, emit tag changes, deliver them once")
    tags.add_argument("--show", action="store_true", help="print current tags as JSON {owner_id: [tag, ...]}")
    tags.add_argument(
        "--cdp",
        action="append",
        default=[u for u in env("VI_CDP_URLS", "").split(",") if u],
        help="sink URL (repeatable; env VI_CDP_URLS, comma-separated)",
    )
    tags.add_argument("--as-of-ms", type=int, default=None, help="evaluate as of this instant (default: now)")
    owners = sub.add_parser("owners", help="load an owner registry (CSV or JSON)")
    owners.add_argument("file")
    erase = sub.add_parser("erase", help="delete an owner's or a vehicle's data from every table")
    whose = erase.add_mutually_exclusive_group(required=True)
    whose.add_argument("--owner", help="owner id: their tags and every vehicle registered to them")
    whose.add_argument("--vin", help="one vehicle's data")
    erase.add_argument("--dry-run", action="store_true", help="print the rows per table it would delete; delete none")
    for p, func in ((tags, _tags), (owners, _owners), (erase, _erase)):
        p.add_argument("--store", default=env("VI_STORE", "chdb://.vi-data/store"))
        p.add_argument("--gateway", default=env("VI_GATEWAY_URL"), help="ask a running gateway over HTTP")
        p.set_defaults(func=func)

    demo = sub.add_parser("demo", help="broker + gateway + simulated fleet, then a summary")
    demo.add_argument("--vehicles", type=int, default=100)
    demo.add_argument("--duration", type=float, default=60 * 86400.0, help="simulated seconds (60 days)")
    demo.add_argument("--sample-hz", type=float, default=0.05, help="coarse, so two months fit in a minute")
    demo.add_argument("--message-s", type=float, default=600.0)
    demo.add_argument("--workdir", default=".vi-demo")
    demo.set_defaults(func=_demo)
    for command in sub.choices.values():  # log flags after the subcommand too: `gateway --log-level DEBUG`
        add_log_flags(command, top_level=False)
    return parser


def _report(exc: VehicleIngestError, fmt: str) -> None:
    """One line per problem: a JSON event when logging JSON (the journal stays parseable), else plain text.
    Passwords in URLs (a store DSN in a StoreError) are masked."""
    from vehicle_ingest.gateway.config_render import redact

    for error in getattr(exc, "errors", [exc]):
        text = redact(str(error))
        if fmt == "json":
            fields = {"key": error.key, "source": error.source} if isinstance(error, ConfigError) else {}
            log.critical("%s", text, extra={"error": type(error).__name__, **fields})
        else:
            print(f"vehicle-ingest: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 for invalid configuration or usage, 1 for other failures (75: see the gateway)."""
    args = _parser().parse_args(argv)
    fmt = args.log_format or default_format(args.command)
    try:
        configure_logging(args.log_level, fmt)
        return args.func(args)
    except (ConfigError, QueryRefusedError) as exc:
        _report(exc, fmt)
        return 2
    except GatewayError as exc:
        _report(exc, fmt)
        return 2 if exc.status == 400 else 1
    except VehicleIngestError as exc:
        _report(exc, fmt)
        return 1
    except Exception:
        if fmt != "json":
            raise
        log.critical("unexpected error", exc_info=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
