"""Log output: one JSON object per line (the default for the gateway), or human-readable lines.

A JSON event has `ts` (ISO-8601, UTC, milliseconds), `level`, `logger`, `msg`,
every field passed with `extra={...}` (an extra whose name is taken is stored
as `extra.<name>`), and `exc` (the formatted traceback) when an exception is
logged. Values that are not JSON types are written as their `str()`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from vehicle_ingest.errors import ConfigError

__all__ = [
    "FORMATS",
    "LEVELS",
    "HumanFormatter",
    "JsonFormatter",
    "add_log_flags",
    "configure_logging",
    "default_format",
]

FORMATS = ("json", "human")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; no newline inside an event (tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            event[f"extra.{key}" if key in event else key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """`2025-01-01 12:00:00,000 INFO logger: message key=value ...` (local time, like logging's default)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = super().formatMessage(record)
        return f"{line} {extras}" if extras else line


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so configuring twice (tests call main() in-process) replaces instead of stacking."""


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send records at `level` and above to `stream` (stderr) as `fmt` ("json" or "human")."""
    if level.upper() not in LEVELS:
        raise ConfigError("log_level", f"expected one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ConfigError("log_format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in ("matplotlib", "numba", "urllib3", "httpx"):  # their INFO is not ours to show a user
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def add_log_flags(parser: argparse.ArgumentParser, top_level: bool) -> None:
    """--log-level / --log-format. Top level: defaults from the environment. Subcommands: SUPPRESS, so a
    flag given after the subcommand wins and an absent one keeps the top-level value."""
    env = os.environ.get
    level = env("VI_LOG_LEVEL") if top_level else argparse.SUPPRESS
    fmt = env("VI_LOG_FORMAT") if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--log-level",
        default=level,
        help="DEBUG, INFO, ... (env VI_LOG_LEVEL; default INFO for gateway, else WARNING: commands print results)",
    )
    parser.add_argument(
        "--log-format", default=fmt, help="json or human (env VI_LOG_FORMAT; default json for gateway, else human)"
    )


def default_format(command: str | None) -> str:
    return "json" if command == "gateway" else "human"


def default_level(command: str | None) -> str:
    return "INFO" if command == "gateway" else "WARNING"
