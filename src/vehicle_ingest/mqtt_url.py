"""`mqtt://host:port` and `mqtts://host:port`: the broker address every component takes.

In the library, not the gateway, because the simulators and the load generator connect
with it too and must not depend on the service.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from vehicle_ingest.errors import ConfigError

__all__ = ["parse_mqtt_url"]


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of a broker URL; ConfigError naming `mqtt_url` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError("mqtt_url", f"{url!r} is not mqtt://host:port or mqtts://host:port")
    default_port = 8883 if parts.scheme == "mqtts" else 1883
    return parts.hostname, parts.port or default_port, parts.scheme == "mqtts"
