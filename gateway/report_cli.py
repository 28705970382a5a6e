"""`vehicle-ingest report --out DIR`: the fleet report (HTML + SVG charts) from a store."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["add_report_parser", "run_report"]


def run_report(args: argparse.Namespace) -> int:
    from vehicle_ingest.gateway.cli import _reading

    from vehicle_ingest.report import build_report

    as_of_ms = time.time_ns() // 1_000_000 if args.as_of_ms is None else args.as_of_ms
    index = _reading(args, lambda session: build_report(session, Path(args.out), as_of_ms, days=args.days))
    print(index)
    return 0


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `report` on the `vehicle-ingest` sub-command parsers."""
    report = subparsers.add_parser("report", help="write the fleet report (index.html + SVG charts) to a folder")
    report.add_argument("--out", required=True, help="folder for index.html and the charts (created if missing)")
    report.add_argument("--store", default=os.environ.get("VI_STORE", "chdb://.vi-data/store"))
    report.add_argument("--as-of-ms", type=int, default=None, help="report as of this instant (default: now)")
    report.add_argument("--days", type=int, default=90, help="days covered by the daily charts (default: 90)")
    report.set_defaults(func=run_report)
    return report
