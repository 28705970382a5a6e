"""The gateway's one HTTP port: /metrics, /healthz, /readyz, and the CLI's /api routes (token-protected).

A deliberately small HTTP/1.1 responder on asyncio streams: the gateway
serves a handful of GET/POST routes to Prometheus and to its own CLI, and
needs no framework for that.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.config import is_loopback

__all__ = ["HttpServer", "Response"]

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def json(cls, status: int, value: object) -> Response:
        return cls(status, json.dumps(value, default=str).encode() + b"\n", "application/json")


Handler = Callable[[bytes], Awaitable[Response]]


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
    ) -> None:
        self._host, self._port, self._routes, self._public = host, port, routes, public
        self._api_authorization = f"Bearer {api_token}".encode() if api_token else b""
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await self._respond(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            response = Response(400, f"bad request: {exc}\n".encode())
        head = (
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}\r\n"
            f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + response.body)
            await writer.drain()
        finally:
            writer.close()

    def _refusal(self, headers: dict[str, str]) -> Response | None:
        if self._api_authorization:
            sent = headers.get("authorization", "").encode("latin-1")
            if hmac.compare_digest(sent, self._api_authorization):
                return None
            return Response(401, b"unauthorized: send Authorization: Bearer <api_token>\n")
        if "origin" in headers:
            return Response(403, b"forbidden: cross-origin request\n")
        if not is_loopback(_host_of(headers.get("host", ""))):
            return Response(403, b"forbidden: Host is not a loopback address\n")
        return None

    async def _respond(self, reader: asyncio.StreamReader) -> Response:
        request_line = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
        if len(request_line) != 3:
            raise ValueError("malformed request line")
        headers = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        method, path = request_line[0], request_line[1].split("?")[0]
        if path not in self._public and (refusal := self._refusal(headers)):
            return refusal
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            return Response(413, b"body too large\n")
        body = await reader.readexactly(length) if length else b""
        handler = self._routes.get((method, path))
        if handler is None:
            return Response(404, b"not found\n")
        try:
            return await handler(body)
        except Exception as exc:
            log.exception("handler %s %s failed", method, path)
            return Response.json(500, {"error": str(exc)})


def _host_of(host_header: str) -> str:
    """`127.0.0.1:9108` -> `127.0.0.1`, `[::1]:9108` -> `::1`, `localhost` -> `localhost`."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
