"""Sinks chosen by URL; several URLs give several sinks, each with its own delivery state."""

from __future__ import annotations

from pathlib import Path

import httpx

from vehicle_ingest.cdp._http import DEFAULT_TIMEOUT_S, HttpSink, SinkUrl
from vehicle_ingest.cdp._jsonl import JsonlSink
from vehicle_ingest.cdp._segment import SegmentSink
from vehicle_ingest.cdp._sensors import SensorsSink
from vehicle_ingest.cdp._sink import Sink
from vehicle_ingest.cdp._webhook import WebhookSink
from vehicle_ingest.errors import ConfigError

__all__ = ["sink_from_url"]

_HTTP_SINKS: dict[str, type[HttpSink]] = {"segment": SegmentSink, "sensors": SensorsSink, "webhook": WebhookSink}
_KEY = "cdp.url"
_USAGE = "use segment+https://KEY@host, sensors+https://host/path?project=NAME, webhook+https://host/path or file:///abs/path.jsonl"


def sink_from_url(
    url: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allow_vin: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Sink:
    """Build the sink a URL names (see schemas/CDP.md); `?name=` overrides the derived sink name.

    `transport` is the httpx seam for tests that want no network; by default
    the sink opens real connections. Errors never echo the URL's secrets.
    """
    parsed = SinkUrl.parse(url)
    if parsed.kind in ("file", "jsonl"):
        if not parsed.base.startswith("/"):
            raise ConfigError(_KEY, f"{parsed.name}: the file sink needs an absolute path, e.g. file:///var/cdp.jsonl")
        return JsonlSink(Path(parsed.base), name=parsed.name, allow_vin=allow_vin)
    cls = _HTTP_SINKS.get(parsed.kind)
    if cls is None or not parsed.base.startswith(("http://", "https://")):
        raise ConfigError(_KEY, f"unsupported CDP URL {parsed.name}: {_USAGE}")
    if cls is SegmentSink and not parsed.username:
        raise ConfigError(_KEY, f"{parsed.name}: the Segment write key goes in the URL: segment+https://KEY@host")
    if timeout_s <= 0:
        raise ConfigError("cdp.timeout", f"must be > 0, got {timeout_s}")
    return cls(parsed, timeout_s=timeout_s, allow_vin=allow_vin, transport=transport)
