"""The gateway's second MQTT connection: it publishes receipts and nothing else.

Why not the ingest connection: that connection's network thread is held while the broker sends
beyond our Receive Maximum (`MqttSource._wait_for_room`), and paho reads as many packets per loop
as it has messages in flight before it writes. Receipts published there went out in steps of
1,000 every ~8 s at 1 M samples/s, so head units timed out and resent every message.

Why not paho here either: paho spends ~80 µs of CPU per QoS 1 publish (a message object and a
condition per publish; per PUBACK a select, three recv calls and a ReasonCode that copies a
100-entry dict). At 1 M samples/s the gateway sends one receipt per message, ~2,000/s: 16 % of a
core, on the ingest process's GIL (benchmarks/README.md, "What receipts cost"). This connection
does only what receipts need (CONNECT, QoS 1 PUBLISH, PUBACK, keep-alive, reconnect) and writes
each drain as one `sendall`: a few µs per receipt.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence

from vehicle_ingest.gateway.mqtt_source import MqttSettings
from vehicle_ingest.gateway.mqtt_wire import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    Connack,
    MqttWireError,
    PacketSplitter,
    connect_packet,
    parse_connack,
    parse_puback,
    publish_packet,
)
from vehicle_ingest.mqtt_url import parse_mqtt_url

__all__ = ["ReceiptSender", "receipt_client_id"]

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 10.0
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1.0, 30.0
_REFUSAL_LOG_EVERY_S = 60.0


def receipt_client_id(client_id: str) -> str:
    """The receipt connection's client id: the ingest connection's, suffixed (two gateways never share one)."""
    return f"{client_id}-receipts"


class _RefusedError(Exception):
    """The broker refused the connection (CONNACK reason >= 0x80): credentials or ACL, not the network."""


class ReceiptSender:
    """QoS 1, not retained, clean start: a receipt is idempotent, so a lost one costs a resend, never data.

    `publish_many` only queues (any thread); one thread owns the socket: it connects, writes what is
    queued within the broker's Receive Maximum, reads PUBACKs, pings, and reconnects with backoff.
    Receipts unacknowledged when the connection drops are sent again (DUP) on the next one.
    """

    def __init__(self, settings: MqttSettings) -> None:
        self._settings = settings
        self._client_id = receipt_client_id(settings.client_id)
        self._max_queued = settings.max_queued_publishes
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._inflight: dict[int, bytes] = {}  # packet id -> the PUBLISH, until its PUBACK
        self._next_mid = 1
        self._changed = threading.Condition()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._connected = False
        self.connections = 0  # successful CONNECTs so far (the first, then reconnects)
        self._refused = 0
        self._refusal_logged_at = 0.0
        self._thread = threading.Thread(target=self._run, name="receipts", daemon=True)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def refused(self) -> int:
        """Receipts the broker answered with a failure reason (an ACL that does not let us write them)."""
        return self._refused

    def start(self) -> None:
        self._thread.start()

    def publish_many(self, receipts: Sequence[tuple[str, bytes]]) -> int:
        """Queue (topic, payload) pairs; returns how many were dropped because the queue is full."""
        with self._changed:
            room = max(0, self._max_queued - len(self._queue) - len(self._inflight))
            self._queue.extend((topic.encode(), payload) for topic, payload in receipts[:room])
        self._wake()
        return max(0, len(receipts) - room)

    def publish(self, topic: str, payload: bytes) -> bool:
        """One receipt; False when it was dropped (queue full: the head unit resends)."""
        return self.publish_many([(topic, payload)]) == 0

    def flush(self, timeout_s: float) -> None:
        """Wait (bounded) until the broker took every queued receipt: the final batches' receipts are not lost
        to our own disconnect, which would make their head units resend them."""
        with self._changed:
            self._changed.wait_for(lambda: not (self._connected and (self._queue or self._inflight)), timeout_s)

    def close(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(_CONNECT_TIMEOUT_S)
        self._wake_r.close()
        self._wake_w.close()

    # -- the connection's thread -----------------------------------------------------------

    def _run(self) -> None:
        delay = _RECONNECT_MIN_S
        while not self._stopping.is_set():
            try:
                sock, connack = self._connect()
            except (OSError, MqttWireError, _RefusedError) as exc:
                log.error("receipt connection to %s failed (%s): retrying in %.0fs", self._settings.url, exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            delay = _RECONNECT_MIN_S
            try:
                self._serve(sock, connack)
            except (OSError, MqttWireError) as exc:
                if not self._stopping.is_set():
                    log.warning("receipt connection lost (%s): receipts wait in a queue until it is back", exc)
            finally:
                with self._changed:
                    self._connected = False
                    self._changed.notify_all()
                with contextlib.suppress(OSError):
                    sock.close()

    def _connect(self) -> tuple[socket.socket, Connack]:
        host, port, tls = parse_mqtt_url(self._settings.url)
        sock: socket.socket = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S)
        try:
            if tls:
                sock = self._tls_context().wrap_socket(sock, server_hostname=host)
            sock.sendall(connect_packet(self._client_id, self._settings.keepalive_s))
            connack = self._read_connack(sock)
        except BaseException:
            sock.close()
            raise
        if connack.reason >= 0x80:
            sock.close()
            raise _RefusedError(f"the broker refused the connection with reason 0x{connack.reason:02x}")
        return sock, connack

    def _tls_context(self) -> ssl.SSLContext:
        s = self._settings
        context = ssl.create_default_context(cafile=s.tls_ca or None)
        if s.tls_cert:
            context.load_cert_chain(s.tls_cert, s.tls_key or None)
        return context

    @staticmethod
    def _read_connack(sock: socket.socket) -> Connack:
        splitter = PacketSplitter()
        while True:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed by the broker before CONNACK")
            for kind, body in splitter.feed(data):
                if kind != CONNACK:
                    raise MqttWireError(f"packet type {kind} before CONNACK")
                return parse_connack(body)

    def _serve(self, sock: socket.socket, connack: Connack) -> None:
        keepalive = self._settings.keepalive_s
        splitter = PacketSplitter()
        with self._changed:
            self._connected = True
            self.connections += 1
            resend = [bytes([p[0] | 0x08]) + p[1:] for p in self._inflight.values()]  # DUP flag set
        if resend:
            sock.sendall(b"".join(resend))
        last_sent, ping_sent = time.monotonic(), 0.0
        while not self._stopping.is_set():
            if self._send_queued(sock, connack):
                last_sent = time.monotonic()
            wait = max(0.0, keepalive / 2 - (time.monotonic() - last_sent)) if keepalive else None
            readable, _, _ = select.select([sock, self._wake_r], [], [], wait)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            if sock in readable and self._read(sock, splitter):
                ping_sent = 0.0
            now = time.monotonic()
            if ping_sent and now - ping_sent > keepalive:
                raise TimeoutError(f"no answer to a ping in {keepalive} s")
            if keepalive and now - last_sent >= keepalive / 2:
                sock.sendall(PINGREQ_PACKET)
                last_sent, ping_sent = now, ping_sent or now
        with contextlib.suppress(OSError):
            sock.sendall(DISCONNECT_PACKET)

    def _send_queued(self, sock: socket.socket, connack: Connack) -> bool:
        """Write what is queued, within the broker's Receive Maximum, as one write."""
        packets = []
        with self._changed:
            room = connack.receive_maximum - len(self._inflight)
            while self._queue and room > 0:
                topic, payload = self._queue.popleft()
                mid = self._take_mid()
                packet = publish_packet(topic, payload, mid)
                if len(packet) > connack.maximum_packet_size:
                    log.error("a receipt of %d bytes is over the broker's maximum packet size: dropped", len(packet))
                    continue
                self._inflight[mid] = packet
                packets.append(packet)
                room -= 1
        if packets:
            sock.sendall(b"".join(packets))
        return bool(packets)

    def _take_mid(self) -> int:
        mid = self._next_mid
        while mid in self._inflight:
            mid = mid % 65535 + 1
        self._next_mid = mid % 65535 + 1
        return mid

    def _read(self, sock: socket.socket, splitter: PacketSplitter) -> bool:
        """Read what the broker sent; True when it answered (any packet counts as an answer to a ping)."""
        try:
            data = sock.recv(65536)
        except ssl.SSLWantReadError:
            return False  # a TLS record not complete yet
        if not data:
            raise ConnectionError("closed by the broker")
        while isinstance(sock, ssl.SSLSocket) and sock.pending():  # decrypted bytes select() cannot see
            data += sock.recv(sock.pending())
        packets = splitter.feed(data)
        acked = refused = 0
        with self._changed:
            for kind, body in packets:
                if kind == PUBACK:
                    mid, reason = parse_puback(body)
                    acked += self._inflight.pop(mid, None) is not None
                    refused += reason >= 0x80
                elif kind == DISCONNECT:
                    raise ConnectionError(f"the broker disconnected us (reason 0x{body[0] if body else 0:02x})")
                elif kind != PINGRESP:
                    raise MqttWireError(f"unexpected packet type {kind} on a publish-only connection")
            if acked:
                self._changed.notify_all()
        if refused:
            self._count_refusals(refused)
        return bool(packets)

    def _count_refusals(self, n: int) -> None:
        self._refused += n
        now = time.monotonic()
        if now - self._refusal_logged_at >= _REFUSAL_LOG_EVERY_S:
            self._refusal_logged_at = now
            log.error(
                "the broker refused %d receipts so far (PUBACK reason >= 0x80): does the ACL let %s write"
                " vi/v1/+/receipt?",
                self._refused,
                self._client_id,
            )

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is already pending) or closed
            self._wake_w.send(b"\0")
