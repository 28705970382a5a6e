"""What the HTTP sinks share: one POST with failure classification, URL parsing, JSON encoding."""

from __future__ import annotations

import json
import ssl
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import httpx

from vehicle_ingest import __version__
from vehicle_ingest.cdp._change import TagChange, redact
from vehicle_ingest.cdp._sink import report_request
from vehicle_ingest.errors import ConfigError, DeliveryError

__all__ = ["DEFAULT_TIMEOUT_S", "HttpRequest", "HttpSink", "SinkUrl", "dumps"]

DEFAULT_TIMEOUT_S = 10.0
_USER_AGENT = f"vehicle-ingest/{__version__}"


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON: the byte counts the CDP limits apply to."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True)
class SinkUrl:
    """A sink URL split into where to send, what is secret and what names the sink."""

    kind: str  # "segment", "sensors", "webhook", "file", "jsonl"
    base: str  # http(s)://host:port/path without userinfo; for files, the path
    username: str
    password: str
    query: dict[str, str]  # without our own `name`
    name_override: str | None

    @classmethod
    def parse(cls, url: str) -> SinkUrl:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError("cdp.url", f"not a valid URL ({exc})") from exc
        kind, _, transport = parts.scheme.partition("+")
        query = dict(parse_qsl(parts.query))
        override = query.pop("name", None)
        host = parts.hostname or ""
        netloc = f"{host}:{port}" if port else host
        # file://rel/x puts "rel" in the host: keep it so the absolute-path check sees it.
        base = f"{transport}://{netloc}{parts.path}" if transport else unquote(parts.netloc + parts.path)
        return cls(kind, base, unquote(parts.username or ""), unquote(parts.password or ""), query, override)

    @property
    def name(self) -> str:
        """Stable and secret-free: no userinfo, no query (tokens live there) except Sensors' project."""
        if self.name_override:
            return self.name_override
        if self.kind in ("file", "jsonl"):
            return f"file:{self.base}"  # both spellings of one file share delivery state
        shown = f"?project={self.query['project']}" if "project" in self.query else ""
        return f"{self.kind}:{self.base}{shown}"

    def endpoint(self, suffix: str = "") -> str:
        """Where to POST: the base (plus `suffix`) and the query minus our own `name` parameter."""
        base = self.base.rstrip("/") + suffix if suffix else self.base
        return f"{base}?{urlencode(self.query)}" if self.query else base


@dataclass(frozen=True)
class HttpRequest:
    content: bytes
    headers: dict[str, str]


class HttpSink(ABC):
    """POSTs each change batch as one or more requests; any failure raises DeliveryError."""

    _path_suffix = ""  # appended to the URL's path (Segment: /v1/batch)

    def __init__(
        self,
        url: SinkUrl,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        allow_vin: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = url.name
        self._endpoint = url.endpoint(self._path_suffix)
        self._params = dict(url.query)
        self._timeout = httpx.Timeout(timeout_s)
        self._allow_vin = allow_vin
        self._transport = transport
        self._auth = httpx.BasicAuth(url.username, url.password) if url.username else None
        self._ssl: ssl.SSLContext | None = None

    async def send(self, changes: Sequence[TagChange]) -> None:
        if not changes:
            return
        requests = self._requests([redact(c, self._allow_vin) for c in changes])
        async with self._client() as client:
            for request in requests:
                await self._post(client, request)

    @abstractmethod
    def _requests(self, changes: Sequence[TagChange]) -> list[HttpRequest]:
        """The requests that carry `changes`, in order."""

    def _client(self) -> httpx.AsyncClient:
        # A client per send: no connection pool outlives the event loop that
        # made it, and nothing needs closing. Building the SSL context is the
        # expensive part (~30 ms), so that is done once.
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return httpx.AsyncClient(
            auth=self._auth,
            timeout=self._timeout,
            verify=self._ssl,
            transport=self._transport,
            headers={"User-Agent": _USER_AGENT},
        )

    async def _post(self, client: httpx.AsyncClient, request: HttpRequest) -> None:
        headers = {"Content-Type": "application/json", **request.headers}
        try:
            response = await client.post(self._endpoint, content=request.content, headers=headers)
        except httpx.TimeoutException as exc:
            report_request(self.name, "timeout")
            raise DeliveryError(self.name, "timeout", f"no answer within {self._timeout.read}s") from exc
        except httpx.HTTPError as exc:
            report_request(self.name, "error")
            raise DeliveryError(self.name, "error", f"{type(exc).__name__}: {exc}") from exc
        status = str(response.status_code)
        report_request(self.name, status)
        if not response.is_success:
            raise DeliveryError(self.name, status, response.text[:300])
