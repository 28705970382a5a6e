"""The commands over a store's data: `stats`, `sql`, `tags`, `owners`, `erase`.

Each works on a stopped gateway's store (`--store`) or through a running gateway (`--gateway`):
an embedded store is locked by the process that opened it. None creates a store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from vehicle_ingest.errors import ConfigError, ConfigErrors, VehicleIngestError
from vehicle_ingest.gateway.cli_support import GatewayError, add_target_flags, api, in_store, now_ms, reading

__all__ = ["add_data_parsers"]


def _stats(args: argparse.Namespace) -> int:
    from vehicle_ingest.storage import fleet_stats

    print(json.dumps(api(args, "/api/stats") if args.gateway else reading(args, fleet_stats)))
    return 0


def _sql(args: argparse.Namespace) -> int:
    if args.gateway:
        result = api(args, "/api/sql", args.query.encode())
        names, rows = result["columns"], result["rows"]
    else:
        answer = reading(args, lambda session: session.run(args.query))
        names, rows = answer.columns, answer.rows
    print("\t".join(names))
    for row in rows:
        print("\t".join(str(v) for v in row))
    return 0


def _tags(args: argparse.Namespace) -> int:
    as_of_ms = now_ms() if args.as_of_ms is None else args.as_of_ms
    if args.gateway:
        body = json.dumps({"as_of_ms": as_of_ms}).encode()
        print(json.dumps(api(args, "/api/tags/show" if args.show else "/api/tags/run", body)))
        return 0

    def show_or_run(store: Any) -> Any:
        from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
        from vehicle_ingest.tags import TagCycle, load_tag_definitions

        cycle = TagCycle(store, load_signal_catalog(), load_event_catalog(), load_tag_definitions())
        if args.show:
            return cycle.show(as_of_ms)
        report = cycle.run(as_of_ms)
        report["delivered"] = asyncio.run(_deliver_once(store, args.cdp_urls))
        return report

    print(json.dumps(in_store(args.store, show_or_run)))
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
    """Every row is checked here first (problems name FILE); the gateway checks again, as the authority."""
    from vehicle_ingest.owners import parse_registry, plan_registry, registry_bytes, save_registry

    path = Path(args.file)
    data = registry_bytes(path)
    rows = parse_registry(data, str(path), path.name)
    if args.gateway:
        route = "/api/owners/check" if args.dry_run else "/api/owners"
        try:
            print(json.dumps(api(args, route, data)))
        except GatewayError as exc:
            raise _gateway_problems(exc, args.gateway.rstrip("/") + route) from exc
        return 0
    if args.dry_run:
        print(json.dumps(in_store(args.store, lambda store: plan_registry(store, rows))))
        return 0
    print(json.dumps({"loaded": in_store(args.store, lambda store: save_registry(store, rows))}))
    return 0


def _gateway_problems(exc: GatewayError, url: str) -> VehicleIngestError:
    """A refused registry's problems (the gateway's `error`, one per line), each on a line of its own."""
    prefix = f"{url}: 400: "
    text = str(exc)
    if exc.status != 400 or not text.startswith(prefix):
        return exc
    return ConfigErrors([ConfigError("", problem, prefix[:-2]) for problem in text.removeprefix(prefix).split("\n")])


def _erase(args: argparse.Namespace) -> int:
    """Exit 1 with one line when the store holds no row of the target (nothing is deleted then)."""
    from vehicle_ingest.privacy import ERASE_WAIT_S, ErasureTarget, erase

    target = ErasureTarget(owner=args.owner or "", vin=args.vin or "")
    if args.gateway:
        body = json.dumps({"owner": target.owner, "vin": target.vin, "dry_run": args.dry_run}).encode()
        # The gateway answers once the replaced parts are off the disk: on a server, old_parts_lifetime.
        print(json.dumps(api(args, "/api/erase", body, timeout_s=ERASE_WAIT_S + 60)))
        return 0
    found = in_store(args.store, lambda store: erase(store, target, dry_run=args.dry_run))
    print(json.dumps({"would_erase" if args.dry_run else "erased": found}))
    return 0


def add_data_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stats = sub.add_parser("stats", help="what the store holds (messages, samples, events, rejections)")
    sql = sub.add_parser("sql", help="run one read-only query (SELECT, SHOW, DESCRIBE, EXPLAIN, EXISTS)")
    sql.add_argument("query")
    tags = sub.add_parser("tags", help="fold new data into features, emit tag changes, deliver them once")
    tags.add_argument("--show", action="store_true", help="print current tags as JSON {owner_id: [tag, ...]}")
    tags.add_argument(
        "--cdp-urls",
        action="append",
        default=[u for u in os.environ.get("VI_CDP_URLS", "").split(",") if u],
        help="sink URL, as the gateway's cdp_urls (repeatable; env VI_CDP_URLS, comma-separated)",
    )
    tags.add_argument("--as-of-ms", type=int, default=None, help="evaluate as of this instant (default: now)")
    owners = sub.add_parser("owners", help="load an owner registry (CSV, JSON or .xlsx); every bad row is reported")
    owners.add_argument("file", help="CSV (, ; or tab; UTF-8), a JSON list, or an .xlsx workbook (its first sheet)")
    owners.add_argument(
        "--dry-run", action="store_true", help="check the file and print what loading it would change; load nothing"
    )
    erase = sub.add_parser("erase", help="delete an owner's or a vehicle's data from every table")
    whose = erase.add_mutually_exclusive_group(required=True)
    whose.add_argument("--owner", help="owner id: their tags and every vehicle registered to them")
    whose.add_argument("--vin", help="one vehicle's data")
    erase.add_argument("--dry-run", action="store_true", help="print the rows per table it would delete; delete none")
    for parser, func in ((stats, _stats), (sql, _sql), (tags, _tags), (owners, _owners), (erase, _erase)):
        add_target_flags(parser)
        parser.set_defaults(func=func)
