"""`vehicle-ingest`: the gateway, its configuration, the data commands, the simulators, the report and the demo.

Every failure is one line naming the cause (`--debug` adds the traceback): exit 2 for usage and
configuration, 1 at run time, 130 after Ctrl-C (75: the gateway stopped with a batch unacked).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from vehicle_ingest.errors import ConfigError, QueryRefusedError, VehicleIngestError
from vehicle_ingest.gateway.cli_support import GatewayError, count, positive
from vehicle_ingest.gateway.logs import add_log_flags, configure_logging, default_format, default_level

__all__ = ["main"]

log = logging.getLogger("vehicle_ingest")
EXIT_INTERRUPTED = 130


def _gateway(args: argparse.Namespace) -> int:
    from vehicle_ingest.gateway.config import resolve_layers
    from vehicle_ingest.gateway.config_render import shown_settings
    from vehicle_ingest.gateway.service import run_gateway

    resolved = resolve_layers(args)
    settings = shown_settings(resolved.config)
    log.info("configuration", extra={"config_file": resolved.file, "settings": settings, "origins": resolved.origins})
    return run_gateway(resolved.config)


def _demo(args: argparse.Namespace) -> int:
    from vehicle_ingest.gateway.demo import run_demo

    return run_demo(args)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, as every other failure: `vehicle-ingest simulate: argument --vehicles: ...`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(prog="vehicle-ingest", description=__doc__.splitlines()[0])
    add_log_flags(parser, top_level=True)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected failure")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    from vehicle_ingest.gateway.data_cli import add_data_parsers
    from vehicle_ingest.gateway.simulate_cli import add_simulate_parser

    add_simulate_parser(sub)
    add_data_parsers(sub)

    from vehicle_ingest.gateway.campaigns_cli import add_campaign_parsers

    add_campaign_parsers(sub)

    demo = sub.add_parser("demo", help="broker + gateway + simulated fleet, then a summary")
    demo.add_argument("--vehicles", type=count, default=100, help="(default: %(default)s)")
    demo.add_argument("--duration", type=positive, default=60 * 86400.0, help="simulated seconds (default: 60 days)")
    demo.add_argument(
        "--sample-hz", type=positive, default=0.05, help="coarse, so two months fit in a minute (default: %(default)s)"
    )
    demo.add_argument("--message-s", type=positive, default=600.0, help="(default: %(default)s)")
    demo.add_argument("--workdir", default=".vi-demo", help="broker, store, logs, truth (default: %(default)s)")
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
        configure_logging(args.log_level or default_level(args.command), fmt)
        return int(args.func(args))
    except (ConfigError, QueryRefusedError) as exc:
        _report(exc, fmt)
        return 2
    except GatewayError as exc:
        _report(exc, fmt)
        return 2 if exc.status == 400 else 1
    except VehicleIngestError as exc:
        _report(exc, fmt)
        return 1
    except KeyboardInterrupt:
        print("vehicle-ingest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _unexpected(exc, fmt, args.debug)


def _unexpected(exc: Exception, fmt: str, debug: bool) -> int:
    """An error no code path named: still one line (the cause, and how to see more), unless --debug."""
    if debug:
        raise exc
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    else:
        text = f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
    if fmt == "json":
        log.critical("%s", text, extra={"error": type(exc).__name__}, exc_info=exc)
    else:
        print(f"vehicle-ingest: {text}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
