"""The gateway's one HTTP port: /metrics, /healthz, /readyz, and the CLI's /api routes (token-protected).

aiohttp's low-level server parses HTTP and enforces the size limits (request line and header
length, header count); this module adds what it lacks for a port that shares its process with
ingestion: a connection cap that evicts the oldest idle connection (so a flood of half-open
connections cannot lock probes out), a body size and a body read deadline, and the guard on
every route outside `public`, applied before a body is read. Every limit is a gateway setting
(`http_*`, docs/CONFIG.md). aiohttp's keep-alive timer starts when a connection opens and closes
one that has not sent a complete request head in `idle_timeout_s`: the slowloris defence.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from vehicle_ingest.errors import ConfigError, QueryBusyError, QueryError, StoreError
from vehicle_ingest.gateway.config import is_loopback

__all__ = ["HttpLimits", "HttpServer", "Response"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def json(cls, status: int, value: object) -> Response:
        return cls(status, json.dumps(value, default=str).encode() + b"\n", "application/json")


Handler = Callable[[bytes], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 128
    max_headers: int = 64
    max_header_bytes: int = 8190  # the request line and each header line
    max_body_bytes: int = 8 << 20
    idle_timeout_s: float = 10.0  # to send a request head, on a new or a kept-alive connection
    body_timeout_s: float = 30.0


class _CappedServer(web.Server):
    """aiohttp's server with a connection cap: over it, the oldest connection without a request in progress goes."""

    def __init__(self, handler: Any, *, max_connections: int, on_evict: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._cap = max_connections
        self._on_evict = on_evict
        self._live: dict[RequestHandler, None] = {}  # insertion order = age
        self.busy: set[RequestHandler] = set()

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._live[handler] = None
        if len(self._live) <= self._cap:
            return
        # A new connection is usually a probe or a real client; an old idle one is a waste or an attack.
        victim = next((h for h in self._live if h not in self.busy and h is not handler), handler)
        del self._live[victim]
        self._on_evict()
        asyncio.get_running_loop().call_soon(victim.force_close)  # after aiohttp finished setting it up

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._live.pop(handler, None)
        super().connection_lost(handler, exc)


class HttpServer:
    """Every route outside `public` is guarded, and refused before its body is read.

    With an `api_token`, a guarded route needs `Authorization: Bearer <api_token>`. Without one (allowed
    on a loopback bind only), it refuses requests a browser could make on a user's behalf: any with an
    `Origin` header (cross-site) or a Host that is not loopback (DNS rebinding).
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: dict[tuple[str, str], Handler],
        public: frozenset[str] = frozenset(),
        api_token: str = "",
        limits: HttpLimits | None = None,
        on_evict: Callable[[], None] = lambda: None,
    ) -> None:
        self._host, self._port, self._routes, self._public = host, port, routes, public
        self._api_authorization = f"Bearer {api_token}".encode() if api_token else b""
        self._limits = limits or HttpLimits()
        self._on_evict = on_evict
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self._server: _CappedServer | None = None

    @property
    def port(self) -> int:
        assert self._site is not None
        return self._site.port

    async def start(self) -> None:
        limits = self._limits
        self._server = _CappedServer(
            self._handle,
            max_connections=limits.max_connections,
            on_evict=self._on_evict,
            keepalive_timeout=limits.idle_timeout_s,
            max_line_size=limits.max_header_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            access_log=None,
        )
        self._runner = web.ServerRunner(self._server, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port, shutdown_timeout=1.0)
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            problem = f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            raise ConfigError("http_port", problem) from exc

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._server is not None
        self._server.busy.add(request.protocol)
        try:
            response = await self._respond(request)
        finally:
            self._server.busy.discard(request.protocol)
        return web.Response(status=response.status, body=response.body, headers={"Content-Type": response.content_type})

    async def _respond(self, request: web.BaseRequest) -> Response:
        path = request.path
        if path not in self._public and (refusal := self._refusal(request)):
            return refusal
        handler = self._routes.get((request.method, path))
        if handler is None:
            known = any(p == path for _, p in self._routes)
            return Response(405 if known else 404, b"method not allowed\n" if known else b"not found\n")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            return await handler(body)
        except Exception as exc:
            return _error_response(request, exc)

    async def _body(self, request: web.BaseRequest) -> bytes | Response:
        limit = self._limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return Response(413, f"body larger than {limit} bytes (http_max_body_bytes)\n".encode())
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self._limits.body_timeout_s):
                while chunk := await request.content.read(65536):
                    size += len(chunk)
                    if size > limit:
                        return Response(413, f"body larger than {limit} bytes (http_max_body_bytes)\n".encode())
                    chunks.append(chunk)
        except TimeoutError:
            return Response(408, b"body not received within http_body_timeout_s\n")
        return b"".join(chunks)

    def _refusal(self, request: web.BaseRequest) -> Response | None:
        headers = request.headers
        if self._api_authorization:
            sent = headers.get("Authorization", "").encode("latin-1", "replace")
            if hmac.compare_digest(sent, self._api_authorization):
                return None
            return Response(401, b"unauthorized: send Authorization: Bearer <api_token>\n")
        if "Origin" in headers:
            return Response(403, b"forbidden: cross-origin request\n")
        if not is_loopback(_host_of(headers.get("Host", ""))):
            return Response(403, b"forbidden: Host is not a loopback address\n")
        return None


def _error_response(request: web.BaseRequest, exc: Exception) -> Response:
    """A route's failure as a status and one JSON line the CLI prints as is."""
    if isinstance(exc, QueryBusyError):
        return Response.json(503, {"error": str(exc)})
    if isinstance(exc, QueryError | ConfigError | ValueError):  # ValueError: bad JSON or UTF-8 in the body
        return Response.json(400, {"error": str(exc)})
    if isinstance(exc, StoreError):
        log.warning("%s %s: store unavailable: %s", request.method, request.path, exc)
        return Response.json(503, {"error": f"store unavailable: {exc}"})
    log.exception("%s %s failed", request.method, request.path)
    return Response.json(500, {"error": f"{type(exc).__name__}: {exc}"})


def _host_of(host_header: str) -> str:
    """`127.0.0.1:9108` -> `127.0.0.1`, `[::1]:9108` -> `::1`, `localhost` -> `localhost`."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
