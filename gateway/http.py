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

__all__ = ["HttpServer", "Response"]

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
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
    """Routes under `/api/` need `Authorization: Bearer <api_token>` when a token is set; the rest are open."""

    def __init__(self, host: str, port: int, routes: dict[tuple[str, str], Handler], api_token: str = "") -> None:
        self._host, self._port, self._routes = host, port, routes
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

    def _authorized(self, authorization: str) -> bool:
        if not self._api_authorization:
            return True
        return hmac.compare_digest(authorization.encode("latin-1"), self._api_authorization)

    async def _respond(self, reader: asyncio.StreamReader) -> Response:
        request_line = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
        headers = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            return Response(413, b"body too large\n")
        body = await reader.readexactly(length) if length else b""
        method, path = request_line[0], request_line[1].split("?")[0]
        handler = self._routes.get((method, path))
        if handler is None:
            return Response(404, b"not found\n")
        if path.startswith("/api/") and not self._authorized(headers.get("authorization", "")):
            return Response(401, b"unauthorized: send Authorization: Bearer <api_token>\n")
        try:
            return await handler(body)
        except Exception as exc:
            log.exception("handler %s %s failed", method, path)
            return Response.json(500, {"error": str(exc)})
