"""`vehicle-ingest cdp quarantine|release`: the tag changes CDP sinks refused, listed and released.

Both work on an embedded store while the gateway is stopped (`--store`) or ask a
running gateway (`--gateway URL`, routes /api/cdp/quarantine and /api/cdp/release).
A released change is pending again: a running gateway delivers it at once; with
`--store`, the gateway delivers it when it next runs. Refused again, it goes back
to the quarantine.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from vehicle_ingest.errors import VehicleIngestError
from vehicle_ingest.gateway.cli_support import add_target_flags, api, in_store

__all__ = ["CdpCommandError", "add_cdp_parser"]

_COLUMNS = ("message_id", "owner_id", "tag", "action", "sink", "status", "at", "answer")
_ANSWER_SHOWN = 80  # characters of the sink's answer in the table; --json has all of it


class CdpCommandError(VehicleIngestError):
    """A `cdp` command could not do what it was asked (bad arguments, unknown ids, gateway unreachable)."""


def add_cdp_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `cdp quarantine` and `cdp release` on the `vehicle-ingest` sub-command parsers."""
    cdp = subparsers.add_parser("cdp", help="tag changes a CDP sink refused: list and release them")
    commands = cdp.add_subparsers(dest="cdp_command", required=True)
    listing = commands.add_parser("quarantine", help="list the changes held in quarantine, oldest first")
    listing.add_argument("--sink", help="only this sink (its name, as in the metrics' sink label)")
    listing.add_argument("--json", action="store_true", help="JSON with the sink's whole answer")
    listing.set_defaults(func=run_quarantine)
    release = commands.add_parser("release", help="make quarantined changes pending again")
    release.add_argument("message_ids", nargs="*", metavar="MESSAGE_ID", help="changes to release")
    # Not an argparse mutually exclusive group: with a nargs="*" positional it refuses --all alone.
    release.add_argument("--all", action="store_true", help="every quarantined change (of --sink, if given)")
    release.add_argument("--sink", help="only this sink's quarantine")
    release.set_defaults(func=run_release)
    for p in (listing, release):
        add_target_flags(p)
    return cdp


def run_quarantine(args: argparse.Namespace) -> int:
    if args.gateway:
        body = json.dumps({"sink": args.sink}).encode() if args.sink else None
        held = _ask(args, "/api/cdp/quarantine", body)["quarantined"]
    else:
        from vehicle_ingest.cdp import Quarantine

        held = [q.to_json() for q in in_store(args.store, lambda store: Quarantine(store).entries(args.sink))]
    print(json.dumps({"quarantined": held}) if args.json else _table(held))
    return 0


def run_release(args: argparse.Namespace) -> int:
    if bool(args.message_ids) == args.all:
        raise CdpCommandError("release: give MESSAGE_ID ... or --all (one of the two)")
    ids = None if args.all else list(args.message_ids)
    if args.gateway:
        request = {"all": True} if ids is None else {"message_ids": ids}
        result = _ask(args, "/api/cdp/release", json.dumps({**request, "sink": args.sink}).encode())
    else:
        from vehicle_ingest.cdp import Quarantine

        released = in_store(args.store, lambda store: Quarantine(store).release(ids, args.sink))
        missing = sorted(set(ids or []) - {q.message_id for q in released})
        shown = [{"message_id": q.message_id, "sink": q.sink} for q in released]
        result = {"released": shown, "not_quarantined": missing}
    print(json.dumps(result))
    if result["not_quarantined"]:
        where = f" for {args.sink}" if args.sink else ""
        raise CdpCommandError(f"not quarantined{where}: {', '.join(result['not_quarantined'])}")
    return 0


def _ask(args: argparse.Namespace, path: str, body: bytes | None) -> Any:
    """The gateway's answer; its refusals and an unreachable gateway are one-line errors (GatewayError)."""
    return api(args, path, body)


def _table(held: list[dict[str, Any]]) -> str:
    """Tab-separated, one change per line; the answer on one line, shortened."""
    lines = ["\t".join(_COLUMNS)]
    for q in held:
        at = datetime.fromtimestamp(q["at_ms"] / 1000, tz=UTC).isoformat(timespec="milliseconds")
        answer = " ".join(str(q["answer"]).split())
        short = answer if len(answer) <= _ANSWER_SHOWN else answer[: _ANSWER_SHOWN - 1] + "…"
        lines.append("\t".join([*(str(q[c]) for c in _COLUMNS[:6]), at, short]))
    return "\n".join(lines)
