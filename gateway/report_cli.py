"""`vehicle-ingest report` (the fleet report: HTML + SVG charts) and `vehicle-ingest audience TAG` (who holds it).

Both read a stopped gateway's store (`--store`) or ask a running gateway (`--gateway`); the report's
charts are drawn here either way, so a gateway needs no plotting library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vehicle_ingest.errors import ConfigError, VehicleIngestError
from vehicle_ingest.gateway.cli_support import add_target_flags, api, count, now_ms, reading

__all__ = ["add_report_parser", "run_report"]


def run_report(args: argparse.Namespace) -> int:
    try:
        from vehicle_ingest.report import ReportData, fetch_report_data, write_report
    except ModuleNotFoundError as exc:  # matplotlib: the report extra
        raise VehicleIngestError(f"the report needs {exc.name}: pip install 'vehicle-ingest[report]'") from exc
    as_of_ms = now_ms() if args.as_of_ms is None else args.as_of_ms
    out = Path(args.out)
    _check_writable(out)
    if args.gateway:
        body = json.dumps({"as_of_ms": as_of_ms, "days": args.days}).encode()
        data = ReportData.from_json(api(args, "/api/report", body))
    else:
        data = reading(args, lambda session: fetch_report_data(session, as_of_ms, args.days))
    print(write_report(data, out))
    return 0


def _check_writable(out: Path) -> None:
    """Refused before any query runs, naming the folder."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".vehicle-ingest-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError("out", f"cannot write the report to {out}: {exc.strerror or exc}") from exc


def run_audience(args: argparse.Namespace) -> int:
    from vehicle_ingest.report.audience import AudienceMember, audience, to_csv
    from vehicle_ingest.tags import load_tag_definitions

    as_of_ms = now_ms() if args.as_of_ms is None else args.as_of_ms
    if args.gateway:
        answer = api(args, "/api/audience", json.dumps({"tag": args.tag, "as_of_ms": as_of_ms}).encode())
        members = [AudienceMember(m["owner_id"], m["since_ms"], m["evidence"]) for m in answer["members"]]
    else:
        known = frozenset(d.id for d in load_tag_definitions())
        members = reading(args, lambda session: audience(session, args.tag, as_of_ms, known))
    if args.format == "csv":
        sys.stdout.write(to_csv(members))
    else:
        print(json.dumps({"tag": args.tag, "owners": len(members), "members": [m.to_json() for m in members]}))
    return 0


def add_report_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `report` and `audience` on the `vehicle-ingest` sub-command parsers."""
    report = subparsers.add_parser("report", help="write the fleet report (index.html + SVG charts) to a folder")
    report.add_argument("--out", required=True, help="folder for index.html and the charts (created if missing)")
    report.add_argument("--as-of-ms", type=int, default=None, help="report as of this instant (default: now)")
    report.add_argument("--days", type=count, default=90, help="days covered by the daily charts (default: 90)")
    add_target_flags(report)
    report.set_defaults(func=run_report)
    who = subparsers.add_parser("audience", help="the owners holding a tag now, since when and why (CSV or JSON)")
    who.add_argument("tag", help="a tag id of schemas/tags.toml, e.g. maintenance_overdue")
    who.add_argument("--format", choices=("csv", "json"), default="csv", help="(default: %(default)s)")
    who.add_argument("--as-of-ms", type=int, default=None, help="as of this instant (default: now)")
    add_target_flags(who)
    who.set_defaults(func=run_audience)
    return report
