"""What the CLI's commands share: the store or the running gateway, argument types, one-line failures."""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vehicle_ingest.errors import ConfigError, StoreError, VehicleIngestError
from vehicle_ingest.gateway.config import GatewayConfig, default_store, env_name

__all__ = [
    "GatewayError",
    "add_target_flags",
    "api",
    "count",
    "existing_store",
    "fraction",
    "in_store",
    "now_ms",
    "positive",
    "reading",
]

T = TypeVar("T")


class GatewayError(VehicleIngestError):
    """The gateway answered an /api request with an error, or could not be reached; `status` 0 = unreachable."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- argument types: refused by argparse with the option's name, exit 2 -------------------------------


def count(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def positive(text: str) -> float:
    """A number > 0."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number >= 0 (0 meaning "off" or "as fast as possible", as the option says)."""
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """`--store DSN` (the gateway stopped) or `--gateway URL` (while it runs: an embedded store is locked)."""
    parser.add_argument(
        "--store",
        default=os.environ.get(env_name("store")) or default_store(),
        help="the store, when no gateway holds it (env VI_STORE; default: %(default)s)",
    )
    parser.add_argument(
        "--gateway",
        default=os.environ.get("VI_GATEWAY_URL"),
        help="ask a running gateway over HTTP instead, e.g. http://127.0.0.1:9108 (env VI_GATEWAY_URL)",
    )


# -- a running gateway ---------------------------------------------------------------------------------


def _http_json(url: str, body: bytes | None, timeout_s: float) -> Any:
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
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GatewayError(0, f"cannot reach the gateway at {url}: {reason} (is it running? check --gateway)") from exc


def _reason_of(body: bytes) -> str:
    """The `error` of a JSON answer, else the body's first line: what the gateway said, in one line."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip().splitlines()[0][:500] if body.strip() else "no reason given"


def api(args: argparse.Namespace, path: str, body: bytes | None = None, timeout_s: float = 120) -> Any:
    """Ask the running gateway at --gateway."""
    return _http_json(args.gateway.rstrip("/") + path, body, timeout_s)


# -- the store itself ----------------------------------------------------------------------------------


def existing_store(dsn: str) -> str:
    """The DSN of a store that exists: a command never creates one (only the gateway and the demo do)."""
    if dsn.startswith("chdb://"):
        path = Path(dsn.removeprefix("chdb://")).expanduser().resolve()
        if not (path.is_dir() and any(path.iterdir())):
            raise ConfigError("store", f"no store at {path}: give --store chdb:///path/of/the/store, or --gateway URL")
        return f"chdb://{path}"
    return dsn


def in_store(dsn: str, work: Callable[[Any], T]) -> T:
    """Open an existing store for writing, bring its schema up to date, do `work` with it, close it."""
    from vehicle_ingest.storage import Store

    existing = existing_store(dsn)
    try:
        store = Store.open(existing)
    except StoreError as exc:
        if existing.startswith("chdb://"):
            lock = "an embedded store is locked by the process using it: while the gateway runs, use --gateway URL"
            raise StoreError(f"{exc} ({lock})") from exc
        raise
    try:
        store.migrate()
        return work(store)
    finally:
        store.close()


def reading(args: argparse.Namespace, work: Callable[[Any], T]) -> T:
    """`work` on one read-only session with the gateway's query limits (`query_*` settings, env VI_QUERY_*)."""
    from vehicle_ingest.gateway.config import resolve
    from vehicle_ingest.gateway.service import query_limits
    from vehicle_ingest.reads import ReadSession

    config: GatewayConfig = resolve(argparse.Namespace())
    session = ReadSession(existing_store(args.store), query_limits(config))
    try:
        return work(session)
    finally:
        session.close()
