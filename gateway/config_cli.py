"""`vehicle-ingest config check FILE | show | reference`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from vehicle_ingest.errors import ConfigError
from vehicle_ingest.gateway.config import Resolved, add_arguments, resolve_layers
from vehicle_ingest.gateway.config_render import redact, reference_markdown, to_json, to_toml
from vehicle_ingest.gateway.logs import add_log_flags

__all__ = ["EXIT_INVALID", "add_config_commands"]

log = logging.getLogger(__name__)

EXIT_INVALID = 2


def add_config_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `config` and its subcommands to the top-level subparsers action `sub`."""
    config = sub.add_parser("config", help="check, show and document the gateway configuration")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="{check,show,reference}")

    check = actions.add_parser("check", help="validate FILE (with the environment and flags); exit 2 if invalid")
    check.add_argument("file", help="TOML file")
    add_arguments(check, config_flag=False)
    show = actions.add_parser("show", help="print the effective configuration and where each value came from")
    add_arguments(show)
    for p, func in ((check, _check), (show, _show)):
        p.add_argument("--format", choices=("toml", "json"), default="toml")
        p.set_defaults(func=func)
    reference = actions.add_parser("reference", help="print the settings reference (docs/CONFIG.md) as markdown")
    reference.set_defaults(func=_reference)
    for p in (check, show, reference):
        add_log_flags(p, top_level=False)


def _errors(exc: ConfigError) -> list[ConfigError]:
    return list(getattr(exc, "errors", [exc]))


def _check(args: argparse.Namespace) -> int:
    try:
        resolved = resolve_layers(args, file=args.file)
    except ConfigError as exc:
        errors = _errors(exc)
        if args.format == "json":
            items = [{"source": e.source, "key": e.key, "problem": e.problem} for e in errors]
            print(json.dumps({"ok": False, "file": args.file, "errors": items}, indent=2))
        for error in errors:
            print(error, file=sys.stderr)
        return EXIT_INVALID
    log.debug("config checked", extra={"config_file": args.file, "origins": resolved.origins})
    _print(resolved, args.format, f"ok: {args.file}")
    return 0


def _show(args: argparse.Namespace) -> int:
    _print(resolve_layers(args), args.format, "effective configuration")
    return 0


def _print(resolved: Resolved, fmt: str, title: str) -> None:
    if fmt == "json":
        document = {
            "ok": True,
            "file": resolved.file,
            "config": json.loads(to_json(resolved.config)),
            "origins": {k: redact(v) for k, v in resolved.origins.items()},
        }
        print(json.dumps(document, indent=2))
        return
    order = "defaults < " + (f"{resolved.file} < " if resolved.file else "") + "env (VI_*) < flags"
    sys.stdout.write(f"# {title} ({order})\n" + to_toml(resolved.config, resolved.origins))


def _reference(_args: argparse.Namespace) -> int:
    sys.stdout.write(reference_markdown())
    return 0
