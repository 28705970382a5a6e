"""One MQTT 5 connection on its own thread: TCP (and TLS), CONNECT, keep-alive, reconnect with backoff.

The gateway's two connections (`mqtt_source.MqttSource` takes the head units' messages,
`receipt_sender.ReceiptSender` publishes receipts) are subclasses that say what to CONNECT with,
what to do once connected, what to write and what the broker's packets mean.

Why not paho: paho spends ~100 µs of CPU per QoS 1 message received and acked, and ~80 µs per
message published (a message object, a condition, per packet a select and three recv calls, a
ReasonCode that copies a 100-entry dict). At 1 M samples/s that was 17 % of the gateway's busy
time plus a share of its GIL waits (benchmarks/README.md). Here one `recv` takes whatever the
broker sent, packets are split in place, and what is to be written goes out as one `sendall` per
turn of the loop: a few µs per message.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from vehicle_ingest.gateway.mqtt_wire import (
    CONNACK,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    Connack,
    MqttWireError,
    Packet,
    PacketSplitter,
    parse_connack,
)
from vehicle_ingest.mqtt_url import parse_mqtt_url

__all__ = ["BrokerDisconnectedError", "ConnectRefusedError", "MqttConnection", "TlsFiles"]

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 10.0
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1.0, 30.0
_READ_BYTES = 1 << 20


class ConnectRefusedError(Exception):
    """The broker answered CONNECT with a failure reason (>= 0x80): credentials or ACL, not the network."""

    def __init__(self, reason: int) -> None:
        super().__init__(f"the broker refused the connection with reason 0x{reason:02x}")
        self.reason = reason


class BrokerDisconnectedError(ConnectionError):
    """The broker sent DISCONNECT with this reason code."""

    def __init__(self, reason: int) -> None:
        super().__init__(f"the broker disconnected us with reason 0x{reason:02x}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: str = ""  # PEM CA file; empty: the system CAs
    cert: str = ""  # PEM client certificate
    key: str = ""

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca or None)
        if self.cert:
            context.load_cert_chain(self.cert, self.key or None)
        return context


class MqttConnection:
    """The thread and the socket; subclasses fill in the hooks below (all run on the connection's thread,
    except `_wake`, which any thread may call when it has something for `_outgoing`)."""

    def __init__(self, url: str, keepalive_s: int, tls: TlsFiles, thread_name: str, max_packet: int = 1 << 20) -> None:
        self.url = url
        self._max_packet = max_packet  # the largest packet we take from the broker
        self._keepalive = keepalive_s
        self._tls = tls
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Send DISCONNECT (normal: a persistent session stays at the broker) and stop the thread."""
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(_CONNECT_TIMEOUT_S)
        self._wake_r.close()
        self._wake_w.close()

    # -- hooks ---------------------------------------------------------------------------------

    def _connect_packet(self) -> bytes:
        raise NotImplementedError

    def _connected(self, sock: socket.socket, connack: Connack) -> None:
        """CONNACK accepted: e.g. subscribe (write to `sock` directly)."""

    def _packets(self, packets: list[Packet]) -> None:
        raise NotImplementedError

    def _outgoing(self) -> bytes:
        """What to write now (one write per turn of the loop)."""
        return b""

    def _reading(self) -> bool:
        """False pauses reading: TCP backpressure keeps what the broker sends at the broker."""
        return True

    def _lost(self, exc: Exception) -> None:
        """The connection dropped (`exc` says how)."""

    def _connect_failed(self, exc: Exception) -> None:
        """No connection this time (refused, unreachable, TLS); the thread retries with backoff."""

    # -- the thread ----------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is already pending) or closed
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        delay = _RECONNECT_MIN_S
        while not self._stopping.is_set():
            splitter = PacketSplitter(self._max_packet)
            try:
                sock, connack, early = self._open(splitter)
            except (OSError, MqttWireError, ConnectRefusedError) as exc:
                self._connect_failed(exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            delay = _RECONNECT_MIN_S
            try:
                self._connected(sock, connack)
                if early:  # a resumed session's messages can follow CONNACK in the same read
                    self._packets(early)
                self._serve(sock, splitter)
            except (OSError, MqttWireError) as exc:
                if not self._stopping.is_set():
                    self._lost(exc)
            finally:
                with contextlib.suppress(OSError):
                    sock.close()
        self._lost(ConnectionError("closed by us"))

    def _open(self, splitter: PacketSplitter) -> tuple[socket.socket, Connack, list[Packet]]:
        """Connected and accepted: the socket, the CONNACK and the packets that arrived with it."""
        host, port, tls = parse_mqtt_url(self.url)
        sock: socket.socket = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S)
        try:
            if tls:
                sock = self._tls.context().wrap_socket(sock, server_hostname=host)
            sock.sendall(self._connect_packet())
            packets: list[Packet] = []
            while not packets:
                packets = _read(sock, splitter)
            if packets[0].kind != CONNACK:
                raise MqttWireError(f"packet type {packets[0].kind} before CONNACK")
            connack = parse_connack(packets[0].body)
            if connack.reason >= 0x80:
                raise ConnectRefusedError(connack.reason)
        except BaseException:
            sock.close()
            raise
        return sock, connack, packets[1:]

    def _serve(self, sock: socket.socket, splitter: PacketSplitter) -> None:
        last_sent, ping_sent = time.monotonic(), 0.0
        while not self._stopping.is_set():
            out = self._outgoing()
            if out:
                sock.sendall(out)
                last_sent = time.monotonic()
            reading = self._reading()
            wait = max(0.0, self._keepalive / 2 - (time.monotonic() - last_sent)) if self._keepalive else None
            ready, _, _ = select.select([sock, self._wake_r] if reading else [self._wake_r], [], [], wait)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            if sock in ready:
                packets = _read(sock, splitter)
                if packets:
                    ping_sent = 0.0
                    self._packets(packets)
            now = time.monotonic()
            if ping_sent and reading and now - ping_sent > self._keepalive:
                raise TimeoutError(f"no answer to a ping in {self._keepalive} s")
            if self._keepalive and now - last_sent >= self._keepalive / 2:
                sock.sendall(PINGREQ_PACKET)
                last_sent, ping_sent = now, ping_sent or now
        with contextlib.suppress(OSError):
            sock.sendall(self._outgoing() + DISCONNECT_PACKET)


def _read(sock: socket.socket, splitter: PacketSplitter) -> list[Packet]:
    try:
        data = sock.recv(_READ_BYTES)
    except ssl.SSLWantReadError:
        return []  # a TLS record not complete yet
    if not data:
        raise ConnectionError("closed by the broker")
    while isinstance(sock, ssl.SSLSocket) and sock.pending():  # decrypted bytes select() cannot see
        data += sock.recv(sock.pending())
    return splitter.feed(data)
