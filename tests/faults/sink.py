"""A real local HTTP CDP endpoint whose answer the scenario switches: down (503) or up (200)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["WebhookEndpoint"]


@dataclass
class WebhookEndpoint:
    """Receives webhook batches ({"changes": [...]}) on 127.0.0.1:`port`; answers `status`."""

    port: int
    status: int = 503
    accepted: list[dict] = field(default_factory=list)  # changes in 2xx answers, in arrival order
    refused: int = 0  # requests answered with an error status
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    def start(self) -> WebhookEndpoint:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="cdp-endpoint", daemon=True).start()
        return self

    def close(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def answer(self, body: bytes) -> int:
        with self._lock:
            status = self.status
            if 200 <= status < 300:
                self.accepted += json.loads(body)["changes"]
            else:
                self.refused += 1
        return status


def _handler(endpoint: WebhookEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status = endpoint.answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    return Handler
