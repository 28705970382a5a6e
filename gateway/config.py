"""Gateway configuration: defaults < environment (VI_*) < command-line flags.

Every setting has one name used everywhere: the dataclass field, the flag
`--field-name` and the variable `VI_FIELD_NAME`. Errors name that key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from vehicle_ingest.errors import ConfigError

__all__ = ["GatewayConfig", "add_arguments", "resolve"]


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    store: str = "chdb://.vi-data/store"
    http_host: str = "127.0.0.1"
    http_port: int = 9108
    client_id: str = "vehicle-ingest-gateway"
    share_group: str = ""
    session_expiry_s: int = 86_400
    receive_max: int = 2000
    batch_max_messages: int = 1000
    batch_max_bytes: int = 16 * 1024 * 1024
    batch_linger_ms: int = 200
    max_payload_bytes: int = 256 * 1024
    max_past_s: int = 90 * 86_400
    max_future_s: int = 300
    stall_timeout_s: int = 30  # /readyz turns false when messages wait this long without a batch being stored
    stop_timeout_s: int = 15  # on SIGTERM with a failing store: give up (unacked, exit 75) after this long
    tags_interval_s: int = 300  # feature jobs + tag engine every N seconds; 0 turns the schedule off
    cdp_urls: str = ""  # comma-separated sink URLs (schemas/CDP.md); empty: changes stay in the outbox
    cdp_allow_vin: int = 0  # 1 lets VINs reach the CDP (never raw coordinates)
    deliver_interval_s: int = 5

    def check(self) -> GatewayConfig:
        positive = (
            "stall_timeout_s",
            "stop_timeout_s",
            "deliver_interval_s",
            "http_port",
            "session_expiry_s",
            "receive_max",
            "batch_max_messages",
            "batch_max_bytes",
            "batch_linger_ms",
            "max_payload_bytes",
            "max_past_s",
            "max_future_s",
        )
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be > 0, got {getattr(self, key)}")
        if self.http_port > 65535:
            raise ConfigError("http_port", f"must be a TCP port (1-65535), got {self.http_port}")
        if self.receive_max > 65535:
            raise ConfigError("receive_max", f"MQTT 5 allows at most 65535, got {self.receive_max}")
        if self.tags_interval_s < 0:
            raise ConfigError("tags_interval_s", f"must be >= 0 (0 turns the schedule off), got {self.tags_interval_s}")
        if self.cdp_allow_vin not in (0, 1):
            raise ConfigError("cdp_allow_vin", f"must be 0 or 1, got {self.cdp_allow_vin}")
        if self.batch_max_messages > _MAX_BATCH_MESSAGES:
            raise ConfigError(
                "batch_max_messages", f"{self.batch_max_messages} exceeds {_MAX_BATCH_MESSAGES} (one insert per batch)"
            )
        if self.batch_max_messages > self.receive_max:
            raise ConfigError(
                "batch_max_messages",
                f"{self.batch_max_messages} exceeds receive_max {self.receive_max}: a batch could never fill",
            )
        if not self.store.startswith(("chdb://", "http://", "https://")):
            raise ConfigError("store", f"{self.store!r}: use chdb:///path or http(s)://host:port")
        _check_mqtt_url(self.mqtt_url)
        if "/" in self.share_group or "+" in self.share_group or "#" in self.share_group:
            raise ConfigError("share_group", f"{self.share_group!r} may not contain '/', '+' or '#'")
        return self


_MAX_BATCH_MESSAGES = 20_000


def _check_mqtt_url(url: str) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("mqtt_url", f"{url!r}: the port is not a number in 1-65535") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port == 0:
        raise ConfigError("mqtt_url", f"{url!r}: use mqtt://host:port or mqtts://host:port")


def _env_name(key: str) -> str:
    return "VI_" + key.upper()


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(GatewayConfig):
        parser.add_argument(_flag(f.name), dest=f.name, default=None, help=f"(env {_env_name(f.name)})")


def _convert(key: str, raw: str, kind: type) -> Any:
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(key, f"expected an integer, got {raw!r}") from None
    return raw


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> GatewayConfig:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(GatewayConfig):
        kind = type(f.default)
        raw = getattr(args, f.name, None)
        if raw is None:
            raw = env.get(_env_name(f.name))
        if raw is not None:
            values[f.name] = _convert(f.name, str(raw), kind)
    return GatewayConfig(**values).check()
