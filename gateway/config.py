"""Gateway configuration: defaults < TOML file < environment (VI_*) < command-line flags.

Every setting has one name used everywhere: the dataclass field, the TOML key,
the flag `--field-name` and the variable `VI_FIELD_NAME`. `GatewayConfig` is the
single source of defaults and documentation (`metadata["doc"]`, and the TOML table
the key may be grouped under, `metadata["group"]`); docs/CONFIG.md is generated
from it. Errors name the key, and where the value came from.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast, get_type_hints
from urllib.parse import urlsplit

from vehicle_ingest.errors import ConfigError, ConfigErrors
from vehicle_ingest.gateway.config_file import parse_text, read_config_file, redact, suggest

__all__ = [
    "CONFIG_ENV",
    "GROUPS",
    "PROCESS_ENV",
    "GatewayConfig",
    "Resolved",
    "Setting",
    "add_arguments",
    "default_store",
    "env_name",
    "flag_name",
    "resolve",
    "resolve_layers",
    "settings",
]

log = logging.getLogger(__name__)

CONFIG_ENV = "VI_CONFIG"
# Variables read by the CLI outside GatewayConfig (not settable in the file).
SECRET_SETTINGS = frozenset({"api_token"})  # never printed, never passed as a command-line flag
PROCESS_ENV = (CONFIG_ENV, "VI_LOG_LEVEL", "VI_LOG_FORMAT", "VI_GATEWAY_URL")
# TOML tables (optional headings) and what they hold, in reference order.
GROUPS = {
    "mqtt": "MQTT broker, session and flow control",
    "store": "ClickHouse store",
    "http": "HTTP server (/metrics, /healthz, /readyz, /api)",
    "query": "Analyst queries (/api/sql, `sql`, `stats`, `report`): read-only sessions with limits",
    "batch": "Batching: one insert (and one ack round) per batch",
    "limits": "Input limits and timeouts",
    "tags": "Feature jobs and tag engine",
    "cdp": "Delivery of tag changes to CDPs",
    "can": "Raw CAN frames (stream `can`) decoded with DBC files",
}
_MAX_BATCH_MESSAGES = 20_000
_MAX_WORKERS = 64
_MIN_TOKEN = 16
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 b64token: sent as is in an HTTP header


def default_store() -> str:
    """The store when none is given: an absolute data directory, whatever folder a command runs in."""
    return cast(str, GatewayConfig.__dataclass_fields__["store"].default)


def _setting(default: Any, group: str, doc: str) -> Any:
    return field(default=default, metadata={"group": group, "doc": doc})


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    mqtt_url: str = _setting(
        "mqtt://127.0.0.1:1883",
        "mqtt",
        "Broker: `mqtt://host:port`, or `mqtts://host:port` for TLS (system CAs unless `mqtt_tls_ca` is set).",
    )
    mqtt_tls_ca: str = _setting(
        "", "mqtt", "PEM file of the CA that signed the broker's certificate (`mqtts://` only). Empty: system CAs."
    )
    mqtt_tls_cert: str = _setting(
        "",
        "mqtt",
        "PEM client certificate the gateway presents (`mqtts://` only); its CN is the broker user name"
        " (gateway/deploy/mosquitto/acl). Needs `mqtt_tls_key`.",
    )
    mqtt_tls_key: str = _setting(
        "", "mqtt", "PEM private key of `mqtt_tls_cert`. Keep it readable by the gateway only."
    )
    store: str = _setting(
        "chdb://~/.local/share/vehicle-ingest/store",
        "store",
        "`chdb:///path` (embedded, locked by this process; `~` is the home of the user running it) or"
        " `http://user:password@host:8123/database` (a ClickHouse server; percent-encode special characters in the"
        " password). The gateway prints the absolute store at start.",
    )
    location_retention_days: int = _setting(
        120,
        "store",
        "Raw coordinates (latitude/longitude signals) are deleted this many days after they were measured"
        " (a TTL; trips keep 5 km geohashes only). Applied at start when it differs from the store's."
        " Must exceed `max_past_s`: a message still accepted must not lose rows (its identity counts them).",
    )
    http_host: str = _setting(
        "127.0.0.1",
        "http",
        "Address the HTTP server binds. It also serves the CLI's /api (read-only SQL, tag runs, owner uploads):"
        " bind a private address (`0.0.0.0` only inside a container network).",
    )
    http_port: int = _setting(
        9108, "http", "Port of /metrics, /healthz, /readyz and the CLI's /api. 0: any free port (logged at start)."
    )
    api_token: str = _setting(
        "",
        "http",
        "Bearer token every /api route requires (`Authorization: Bearer <token>`; the CLI sends `VI_API_TOKEN`)."
        " /metrics, /healthz and /readyz stay open for Prometheus and probes. Required when `http_host` is not a"
        " loopback address: /api reads raw data and erases it. Prefer the environment over a file or flag.",
    )
    http_max_connections: int = _setting(
        128,
        "http",
        "Open connections at most. A connection over the cap closes the oldest one with no request in progress,"
        " so idle or half-open connections cannot lock out probes and scrapes.",
    )
    http_max_headers: int = _setting(64, "http", "Header lines per request at most (more: 400).")
    http_max_header_bytes: int = _setting(
        8190, "http", "Bytes of the request line and of each header line at most (more: 400)."
    )
    http_max_body_bytes: int = _setting(
        8 * 1024 * 1024, "http", "Request body bytes at most (more: 413), e.g. an owner registry upload."
    )
    http_idle_timeout_s: int = _setting(
        10,
        "http",
        "A connection that has not sent a complete request head this long after it opened, or after its last"
        " response, is closed (slow or silent clients).",
    )
    http_body_timeout_s: int = _setting(
        30, "http", "Seconds to receive a request's body once its head arrived (else 408)."
    )
    query_store: str = _setting(
        "",
        "query",
        "Store DSN for reads. Empty: `store`, on separate read-only sessions. On a ClickHouse server, a read-only"
        " user with a settings profile (schemas/clickhouse/security/read_role.sql).",
    )
    query_max_memory_bytes: int = _setting(
        1024**3, "query", "Memory one query may use (ClickHouse `max_memory_usage`); over it the query fails."
    )
    query_max_execution_s: int = _setting(
        30, "query", "Seconds one query may run (`max_execution_time`); over it the query fails."
    )
    query_max_result_rows: int = _setting(
        100_000, "query", "Rows one result may have (`max_result_rows`); over it the query fails: add LIMIT."
    )
    query_max_result_bytes: int = _setting(
        64 * 1024 * 1024, "query", "Bytes one result may have (`max_result_bytes`); over it the query fails."
    )
    query_max_threads: int = _setting(
        1, "query", "Threads one query may use (`max_threads`): the rest of the CPU stays with ingestion."
    )
    query_max_concurrent: int = _setting(2, "query", "Queries at once; one more is answered 503 at once (no queue).")
    query_max_bytes: int = _setting(64 * 1024, "query", "Length of a query's text at most, in bytes.")
    client_id: str = _setting(
        "",
        "mqtt",
        "MQTT client id. The broker keeps the unacked session under it: stable across restarts, unique per process."
        " Empty: `vehicle-ingest-<host>-<hash of the store>`, so two gateways on two stores never share one.",
    )
    share_group: str = _setting(
        "",
        "mqtt",
        "MQTT 5 shared subscription group (`$share/<group>/vi/v1/+/signals`, `events`, `can`): gateways in one group"
        " split the stream."
        " Give each its own stable `client_id` and restart a dead one under it promptly: mosquitto keeps routing"
        " a dead member's share to its session until it reconnects (docs/RELIABILITY.md)."
        " Empty: a plain subscription. No `/`, `+` or `#`.",
    )
    workers: int = _setting(
        1,
        "mqtt",
        "Gateway processes on one MQTT 5 shared subscription (`share_group`, or `vehicle-ingest` when empty)."
        " Worker k uses client id `<client_id>-k`, HTTP port `http_port + k` and, on an embedded store, its own"
        " shard `<path>/worker-k`; a worker that dies is restarted. Tags run in worker 0 only, on a server store.",
    )
    session_expiry_s: int = _setting(
        86_400, "mqtt", "How long the broker keeps the session and its queued messages while the gateway is away."
    )
    receive_max: int = _setting(
        2000, "mqtt", "MQTT 5 Receive Maximum: messages delivered but not yet acked (stored). At most 65535."
    )
    receipts: bool = _setting(
        True,
        "mqtt",
        "Publish receipts on `vi/v1/<VIN>/receipt` after the insert holding a message returned (schemas/WIRE_FORMAT.md"
        " section 13): head units drop their copy only then. Off: head units can rely on the broker's PUBACK only.",
    )
    receipt_interval_ms: int = _setting(
        200, "mqtt", "Receipts are coalesced per VIN over this long: one receipt covers every message settled then."
    )
    batch_max_messages: int = _setting(
        1000, "batch", f"Messages per batch; at most {_MAX_BATCH_MESSAGES} and at most `receive_max`."
    )
    batch_max_bytes: int = _setting(16 * 1024 * 1024, "batch", "Payload bytes per batch.")
    batch_linger_ms: int = _setting(200, "batch", "Wait after a batch's first message for more before storing it.")
    max_payload_bytes: int = _setting(
        256 * 1024, "limits", "Larger messages are rejected as `oversize` (dead-lettered and acked)."
    )
    max_past_s: int = _setting(
        90 * 86_400, "limits", "Samples older than this (vs. the receive time) are rejected as `timestamp_skew`."
    )
    max_future_s: int = _setting(
        300, "limits", "Samples further ahead of the receive time are rejected as `timestamp_skew`."
    )
    stall_timeout_s: int = _setting(
        30, "limits", "/readyz turns 503 when a received message waited this long without a batch being stored."
    )
    stop_timeout_s: int = _setting(
        15,
        "limits",
        "On SIGTERM with a failing store: give up after this long, leave the batch unacked and exit 75."
        " Keep the supervisor's stop timeout longer.",
    )
    tags_interval_s: int = _setting(
        300, "tags", "Run the feature jobs and the tag engine every N seconds; 0 turns the schedule off."
    )
    moments: bool = _setting(
        True,
        "tags",
        "Evaluate the real-time moments of schemas/tags.toml on every batch and write them to the CDP outbox"
        " before the batch is acked (schemas/CDP.md).",
    )
    cdp_urls: str = _setting(
        "", "cdp", "Comma-separated sink URLs (schemas/CDP.md). Empty: tag changes stay in the outbox."
    )
    cdp_allow_vin: bool = _setting(False, "cdp", "Let VINs reach the CDP (raw coordinates never do).")
    deliver_interval_s: int = _setting(
        5, "cdp", "Seconds between outbox delivery rounds; a tag run that emits changes starts one at once."
    )
    cdp_timeout_s: int = _setting(
        10,
        "cdp",
        "Seconds a CDP request may take to connect, to send and between bytes of the answer; past that it counts"
        " as a `timeout` and the batch is retried with backoff (never quarantined).",
    )
    exposure_events: str = _setting(
        "Campaign Exposed,Experiment Viewed",
        "cdp",
        "Comma-separated event names that `POST /api/exposures` and `vehicle-ingest exposures` take as campaign"
        ' exposures (Segment `track`, Sensors events); other events are ignored (schemas/CDP.md, "Exposures").',
    )
    can_models: str = _setting(
        "",
        "can",
        "Vehicle models file: VIN prefixes -> DBC files and catalog mapping (format of schemas/can/models.toml)."
        " Empty: the bundled schemas/can/models.toml.",
    )

    @property
    def mqtt_client_id(self) -> str:
        """`client_id`, or one derived from this host and the store: stable across restarts, distinct per store."""
        if self.client_id:
            return self.client_id
        store = self.store
        if store.startswith("chdb://"):
            store = "chdb://" + str(Path(store.removeprefix("chdb://")).expanduser().resolve())
        digest = hashlib.blake2b(store.encode(), digest_size=4).hexdigest()
        host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]
        return f"vehicle-ingest-{host}-{digest}"

    @property
    def exposure_names(self) -> tuple[str, ...]:
        """`exposure_events` as names: split at commas, spaces around each trimmed."""
        return tuple(n.strip() for n in self.exposure_events.split(",") if n.strip())

    def check(self) -> GatewayConfig:
        """Raise `ConfigErrors` with every value problem; return self when there is none."""
        errors = self.problems()
        if errors:
            raise ConfigErrors(errors)
        return self

    def problems(self) -> list[ConfigError]:
        return [
            *_range_problems(self),
            *_batch_problems(self),
            *_address_problems(self),
            *_can_problems(self),
            *_cdp_problems(self),
        ]


def _range_problems(c: GatewayConfig) -> list[ConfigError]:
    positive = (
        "stall_timeout_s",
        "stop_timeout_s",
        "deliver_interval_s",
        "cdp_timeout_s",
        "session_expiry_s",
        "receive_max",
        "batch_max_messages",
        "batch_max_bytes",
        "batch_linger_ms",
        "max_payload_bytes",
        "max_past_s",
        "max_future_s",
        "location_retention_days",
        "http_max_connections",
        "http_max_headers",
        "http_max_header_bytes",
        "http_max_body_bytes",
        "http_idle_timeout_s",
        "http_body_timeout_s",
        "query_max_memory_bytes",
        "query_max_execution_s",
        "query_max_result_rows",
        "query_max_result_bytes",
        "query_max_threads",
        "query_max_concurrent",
        "query_max_bytes",
        "receipt_interval_ms",
    )
    errors = [ConfigError(k, f"must be > 0, got {getattr(c, k)}") for k in positive if getattr(c, k) <= 0]
    if not 1 <= c.workers <= _MAX_WORKERS:
        errors.append(ConfigError("workers", f"must be 1-{_MAX_WORKERS}, got {c.workers}"))
    if not 0 <= c.http_port <= 65535 or (c.http_port and c.http_port + max(c.workers, 1) - 1 > 65535):
        errors.append(ConfigError("http_port", f"must be a TCP port (0-65535) for every worker, got {c.http_port}"))
    if c.receive_max > 65535:
        errors.append(ConfigError("receive_max", f"MQTT 5 allows at most 65535, got {c.receive_max}"))
    if 0 < c.location_retention_days * 86_400 <= c.max_past_s:
        problem = f"{c.location_retention_days} days must exceed max_past_s ({c.max_past_s} s)"
        errors.append(ConfigError("location_retention_days", problem))
    if c.tags_interval_s < 0:
        problem = f"must be >= 0 (0 turns the schedule off), got {c.tags_interval_s}"
        errors.append(ConfigError("tags_interval_s", problem))
    return errors


def _batch_problems(c: GatewayConfig) -> list[ConfigError]:
    if c.batch_max_messages > _MAX_BATCH_MESSAGES:
        problem = f"{c.batch_max_messages} exceeds {_MAX_BATCH_MESSAGES} (one insert per batch)"
        return [ConfigError("batch_max_messages", problem)]
    if 0 < c.receive_max < c.batch_max_messages:
        problem = f"{c.batch_max_messages} exceeds receive_max {c.receive_max}: a batch could never fill"
        return [ConfigError("batch_max_messages", problem)]
    return []


def _address_problems(c: GatewayConfig) -> list[ConfigError]:
    errors = []
    for key in ("store", "query_store"):
        dsn = getattr(c, key)
        if dsn or key == "store":
            errors += _dsn_problems(key, dsn)
    if c.query_store.startswith("chdb://") and c.query_store != c.store:
        errors.append(ConfigError("query_store", "an embedded store is read through `store` itself: leave it empty"))
    errors += _mqtt_url_problems(c.mqtt_url)
    errors += _tls_problems(c)
    if any(ch in c.share_group for ch in "/+#"):
        errors.append(ConfigError("share_group", f"{c.share_group!r} may not contain '/', '+' or '#'"))
    if not c.api_token and not is_loopback(c.http_host):
        problem = f"required when http_host ({c.http_host}) is not a loopback address: /api reads and erases data"
        errors.append(ConfigError("api_token", problem))
    if c.api_token and not (len(c.api_token) >= _MIN_TOKEN and _TOKEN.fullmatch(c.api_token)):
        problem = f"must be >= {_MIN_TOKEN} characters of A-Z a-z 0-9 . _ ~ + / - (e.g. `openssl rand -hex 24`)"
        errors.append(ConfigError("api_token", problem))
    return errors


def is_loopback(host: str) -> bool:
    """True for a loopback address or `localhost`; an empty host (every interface) or a name is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _cdp_problems(c: GatewayConfig) -> list[ConfigError]:
    """Every sink URL as the gateway will build it: a bad one is a config error now, not a crash at start."""
    from vehicle_ingest.cdp import sink_from_url

    errors, names = [], []
    for url in (u.strip() for u in c.cdp_urls.split(",") if u.strip()):
        try:
            names.append(sink_from_url(url, timeout_s=max(c.cdp_timeout_s, 1)).name)
        except ConfigError as exc:
            errors.append(ConfigError("cdp_urls", exc.problem))
    if len(set(names)) != len(names):
        errors.append(ConfigError("cdp_urls", f"two sinks have the same name {names}; add ?name=... to one URL"))
    if not c.exposure_names:
        errors.append(ConfigError("exposure_events", 'name at least one event, e.g. "Campaign Exposed"'))
    return errors


def _dsn_problems(key: str, dsn: str) -> list[ConfigError]:
    if dsn.startswith("chdb://"):
        return [] if dsn.removeprefix("chdb://") else [ConfigError(key, "chdb:// needs a path: chdb:///var/lib/vi")]
    parts = urlsplit(dsn)
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return [ConfigError(key, f"{redact(dsn)!r}: the port is not a number in 1-65535")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [ConfigError(key, f"{redact(dsn)!r}: use chdb:///path or http(s)://user:password@host:8123/db")]
    return []


def _can_problems(c: GatewayConfig) -> list[ConfigError]:
    if c.can_models and not Path(c.can_models).is_file():
        return [ConfigError("can_models", f"{c.can_models!r}: no such file")]
    return []


def _tls_problems(c: GatewayConfig) -> list[ConfigError]:
    files = {k: getattr(c, k) for k in ("mqtt_tls_ca", "mqtt_tls_cert", "mqtt_tls_key")}
    given = [k for k, v in files.items() if v]
    if given and not c.mqtt_url.startswith("mqtts://"):
        return [ConfigError(given[0], f"is set but mqtt_url {c.mqtt_url!r} is not mqtts:// (no TLS)")]
    if bool(c.mqtt_tls_cert) != bool(c.mqtt_tls_key):
        missing = "mqtt_tls_key" if c.mqtt_tls_cert else "mqtt_tls_cert"
        return [ConfigError(missing, "a client certificate needs both mqtt_tls_cert and mqtt_tls_key")]
    return [ConfigError(k, f"{v!r} is not a readable file") for k, v in files.items() if v and not Path(v).is_file()]


def _mqtt_url_problems(url: str) -> list[ConfigError]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [ConfigError("mqtt_url", f"{url!r}: the port is not a number in 1-65535")]
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port == 0:
        return [ConfigError("mqtt_url", f"{url!r}: use mqtt://host:port or mqtts://host:port")]
    if parts.username or parts.password:
        return [ConfigError("mqtt_url", "a user name or password in the URL is not supported (it would be ignored)")]
    return []


# -- the schema, as data ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One documented setting of GatewayConfig."""

    name: str
    kind: type
    default: Any
    group: str
    doc: str


def settings() -> tuple[Setting, ...]:
    hints = get_type_hints(GatewayConfig)
    return tuple(
        Setting(f.name, hints[f.name], f.default, f.metadata["group"], f.metadata["doc"]) for f in fields(GatewayConfig)
    )


def env_name(key: str) -> str:
    return "VI_" + key.upper()


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, config_flag: bool = True) -> None:
    """`--config FILE` (unless `config_flag` is False) and one `--field-name` flag per setting."""
    if config_flag:
        parser.add_argument("--config", default=None, metavar="FILE", help=f"TOML file (env {CONFIG_ENV})")
    for s in settings():
        parser.add_argument(flag_name(s.name), dest=s.name, default=None, help=f"(env {env_name(s.name)}) {s.doc}")


# -- resolution ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The effective configuration and where each non-default value came from."""

    config: GatewayConfig
    origins: dict[str, str]  # key -> file path, "env VI_NAME" or "--flag-name"
    file: str | None


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> GatewayConfig:
    return resolve_layers(args, env).config


def resolve_layers(args: argparse.Namespace, env: Mapping[str, str] | None = None, file: str | None = None) -> Resolved:
    """Merge defaults < file (`file`, else `args.config`, else VI_CONFIG) < env < flags; raise every problem at once."""
    env = os.environ if env is None else env
    path = file or getattr(args, "config", None) or env.get(CONFIG_ENV) or None
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    errors: list[ConfigError] = []
    if path:
        kinds = {s.name: s.kind for s in settings()}
        file_values, errors = read_config_file(Path(path), kinds, {s.name: s.group for s in settings()})
        values.update(file_values)
        origins.update(dict.fromkeys(file_values, path))
    errors += _text_layers(args, env, values, origins)
    _warn_unknown_env(env)
    config = GatewayConfig(**values)
    failed = {e.key for e in errors}
    errors += [ConfigError(e.key, e.problem, origins.get(e.key, "")) for e in config.problems() if e.key not in failed]
    if errors:
        raise ConfigErrors(errors)
    return Resolved(config, origins, path)


def _text_layers(
    args: argparse.Namespace, env: Mapping[str, str], values: dict[str, Any], origins: dict[str, str]
) -> list[ConfigError]:
    """Env, then flags: the last one given wins; only the winning text is parsed."""
    errors = []
    for s in settings():
        flag = getattr(args, s.name, None)
        raw, source = (flag, flag_name(s.name)) if flag is not None else (env.get(env_name(s.name)), "")
        if raw is None:
            continue
        source = source or f"env {env_name(s.name)}"
        try:
            values[s.name] = parse_text(s.name, str(raw), s.kind)
        except ConfigError as exc:
            errors.append(ConfigError(exc.key, exc.problem, source))
            continue
        origins[s.name] = source
    return errors


def _warn_unknown_env(env: Mapping[str, str]) -> None:
    known = {env_name(s.name) for s in settings()} | set(PROCESS_ENV)
    by_key = {name.removeprefix("VI_").lower(): name for name in known}
    for name in sorted(n for n in env if n.startswith("VI_") and n not in known):
        hint = by_key.get(suggest(name, sorted(by_key)) or "")
        log.warning("%s is not a vehicle-ingest setting%s", name, f"; did you mean {hint}?" if hint else "")
