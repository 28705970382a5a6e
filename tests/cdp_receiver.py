"""A real Segment-compatible receiver on 127.0.0.1 for the quarantine tests: refuses chosen changes.

It answers `status` (400 by default, with a JSON error naming the change) to
any /v1/batch request that carries the track message of a change in `poison`,
and 200 otherwise; `refuse_all` answers every request with that status instead.
Every request is recorded with its answer and its track message ids, in order.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    status: int
    tracks: list[str]  # messageIds of the track messages (one per change), in order


@dataclass
class Receiver:
    poison: set[str] = field(default_factory=set)
    status: int = 400
    refuse_all: int | None = None
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    address: str = ""

    def answer(self, body: bytes) -> tuple[int, bytes]:
        tracks = [m["messageId"] for m in json.loads(body)["batch"] if m["type"] == "track"]
        with self.lock:
            refused = sorted(self.poison.intersection(tracks))
            if self.refuse_all is not None:
                status, text = self.refuse_all, {"error": "refused"}
            elif refused:
                status, text = self.status, {"error": f"invalid traits in {refused[0]}"}
            else:
                status, text = 200, {"success": True}
            self.requests.append(Request(status, tracks))
        return status, json.dumps(text).encode()

    def statuses(self) -> list[int]:
        with self.lock:
            return [r.status for r in self.requests]

    def accepted(self) -> Counter[str]:
        """How many times each change was in a request answered 200."""
        with self.lock:
            return Counter(t for r in self.requests if r.status == 200 for t in r.tracks)

    def accepted_in_order(self) -> list[str]:
        with self.lock:
            return [t for r in self.requests if r.status == 200 for t in r.tracks]


def start_receiver(receiver: Receiver) -> ThreadingHTTPServer:
    """Serve `receiver` on a free port (sets receiver.address); call shutdown() and server_close() after."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status, body = receiver.answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), name="cdp-receiver", daemon=True).start()
    receiver.address = f"127.0.0.1:{httpd.server_address[1]}"
    return httpd
