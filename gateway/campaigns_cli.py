"""`vehicle-ingest exposures FILE` (campaign exposures from a CSV / JSON export) and `vehicle-ingest campaigns`
(each campaign's uplift on in-car behaviour, with its interval).

Both work on a stopped gateway's store (`--store`) or through a running gateway (`--gateway`). Exposures
are checked here first (the gateway checks again, as the authority); good rows are stored, every bad row
is reported with its reason, and the command then exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vehicle_ingest.errors import ConfigError
from vehicle_ingest.gateway.cli_support import add_target_flags, api, in_store, now_ms, reading

__all__ = ["add_campaign_parsers"]

_CHUNK = 5000  # rows per request to a gateway: far below http_max_body_bytes


def _exposure_names() -> tuple[str, ...]:
    """The gateway's `exposure_events` setting, from its config file and environment (VI_CONFIG, VI_*)."""
    from vehicle_ingest.gateway.config import resolve

    return resolve(argparse.Namespace()).exposure_names


def _exposures(args: argparse.Namespace) -> int:
    from vehicle_ingest.campaigns import parse_exposure_file, save_exposures

    path = Path(args.file)
    try:
        parsed = parse_exposure_file(path.read_bytes(), _exposure_names(), now_ms())
    except ValueError as exc:
        raise ConfigError("file", f"{path}: {exc}") from exc
    if args.gateway:
        stored = duplicates = 0
        for lo in range(0, len(parsed.exposures), _CHUNK):
            rows = [e.to_row() for e in parsed.exposures[lo : lo + _CHUNK]]
            answer = api(args, "/api/exposures", json.dumps({"exposures": rows}).encode())
            stored, duplicates = stored + answer["stored"], duplicates + answer["duplicates"]
    else:
        saved = in_store(args.store, lambda store: save_exposures(store, parsed.exposures))
        stored, duplicates = saved.stored, saved.duplicates
    for refusal in parsed.refused:
        where = f"line {refusal.index + 2}" if not _is_json(path) else f"item {refusal.index + 1}"
        print(f"{path}: {where}: {refusal.reason}: {refusal.detail}", file=sys.stderr)
    print(json.dumps({"stored": stored, "duplicates": duplicates, **parsed.summary()}))
    return 1 if parsed.refused else 0


def _is_json(path: Path) -> bool:
    return path.read_bytes().lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{")


def _campaigns(args: argparse.Namespace) -> int:
    as_of_ms = now_ms() if args.as_of_ms is None else args.as_of_ms
    if args.gateway:
        results = api(args, "/api/campaigns", json.dumps({"as_of_ms": as_of_ms}).encode())
    else:
        from vehicle_ingest.campaigns import campaign_results, load_campaign_definitions
        from vehicle_ingest.tags import load_tag_definitions

        campaigns = load_campaign_definitions(load_tag_definitions())
        results = reading(args, lambda session: campaign_results(session, campaigns, as_of_ms))
    if not args.json:
        print(_table(results))
    else:
        print(json.dumps(results))  # one object, the last line: {campaign_id: {"uplift", "ci_low", ...}}
    return 0


def _figure(value: Any, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _table(results: dict[str, dict[str, Any]]) -> str:
    """A few lines per campaign, for a person: groups, outcome, uplift with its interval, and any warning."""
    lines = []
    for cid, r in results.items():
        interval = f"[{_figure(r['ci_low'], True)}, {_figure(r['ci_high'], True)}]"
        lines += [
            f"{cid}: {r['audience']}, {r['outcome']}",
            f"  treated {r['treated']} ({r['metric']} {_figure(r['treated_outcome'])})"
            f"  control {r['control']} ({r['metric']} {_figure(r['control_outcome'])})",
            f"  uplift {_figure(r['uplift'], True)} 95% {interval}  p {_figure(r['p_value'])}"
            f"  detectable {_figure(r['mde'])}",
        ]
        if r["warning"]:
            lines.append(f"  warning: {r['warning']}")
    return "\n".join(lines) if lines else "no campaigns in schemas/campaigns.toml"


def add_campaign_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    exposures = sub.add_parser("exposures", help="load campaign exposures (CSV or JSON export from the marketing tool)")
    exposures.add_argument(
        "file", help="CSV (owner_id,campaign_id,exposed_at[,variant,message_id]) or JSON (rows, Segment or Sensors)"
    )
    campaigns = sub.add_parser("campaigns", help="each campaign's uplift on in-car behaviour, with its 95% interval")
    campaigns.add_argument("--json", action="store_true", help="one JSON object {campaign_id: {...}} (last line)")
    campaigns.add_argument("--as-of-ms", type=int, default=None, help="measure as of this instant (default: now)")
    for parser, func in ((exposures, _exposures), (campaigns, _campaigns)):
        add_target_flags(parser)
        parser.set_defaults(func=func)
