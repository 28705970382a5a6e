"""The gateway's second MQTT connection: it publishes receipts and nothing else.

Why not the ingest connection: that connection stops reading while the broker sends beyond our
Receive Maximum (`MqttSource._reading`), and a receipt must not wait for the ingest window.
On its own connection a receipt waits only for the broker. Each drain goes out as one write
(`MqttConnection`: a few µs per receipt, against ~80 µs through paho).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from vehicle_ingest.gateway.mqtt_connection import ConnectRefusedError, MqttConnection
from vehicle_ingest.gateway.mqtt_source import MqttSettings
from vehicle_ingest.gateway.mqtt_wire import (
    DISCONNECT,
    PINGRESP,
    PUBACK,
    Connack,
    MqttWireError,
    Packet,
    connect_packet,
    parse_puback,
    publish_packet,
)

__all__ = ["ReceiptSender", "receipt_client_id"]

log = logging.getLogger(__name__)

_REFUSAL_LOG_EVERY_S = 60.0


def receipt_client_id(client_id: str) -> str:
    """The receipt connection's client id: the ingest connection's, suffixed (two gateways never share one)."""
    return f"{client_id}-receipts"


class ReceiptSender(MqttConnection):
    """QoS 1, not retained, clean start: a receipt is idempotent, so a lost one costs a resend, never data.

    `publish_many` only queues (any thread); the connection's thread writes what is queued within
    the broker's Receive Maximum and reads the PUBACKs. Receipts unacknowledged when the connection
    drops are sent again (DUP) on the next one.
    """

    def __init__(self, settings: MqttSettings) -> None:
        super().__init__(settings.url, settings.keepalive_s, settings.tls, "receipts")
        self._client_id = receipt_client_id(settings.client_id)
        self._max_queued = settings.max_queued_publishes
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._inflight: dict[int, bytes] = {}  # packet id -> the PUBLISH, until its PUBACK
        self._resend: list[bytes] = []  # the inflight PUBLISHes of a dropped connection, DUP set
        self._next_mid = 1
        self._window = 65535  # the broker's Receive Maximum
        self._broker_max_packet = 268_435_460
        self._changed = threading.Condition()
        self._is_connected = False
        self.connections = 0  # successful CONNECTs so far (the first, then reconnects)
        self._refused = 0
        self._refusal_logged_at = 0.0

    @property
    def connected(self) -> bool:
        return self._is_connected

    @property
    def refused(self) -> int:
        """Receipts the broker answered with a failure reason (an ACL that does not let us write them)."""
        return self._refused

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
            self._changed.wait_for(lambda: not (self._is_connected and (self._queue or self._inflight)), timeout_s)

    # -- the connection thread ----------------------------------------------------------------

    def _connect_packet(self) -> bytes:
        return connect_packet(self._client_id, self._keepalive)

    def _connected(self, _sock: object, connack: Connack) -> None:
        with self._changed:
            self._is_connected = True
            self.connections += 1
            self._window, self._broker_max_packet = connack.receive_maximum, connack.maximum_packet_size
            self._resend = [bytes([p[0] | 0x08]) + p[1:] for p in self._inflight.values()]

    def _connect_failed(self, exc: Exception) -> None:
        log.error("receipt connection to %s failed (%s): retrying", self.url, exc)
        if isinstance(exc, ConnectRefusedError):
            log.error("does the broker let %s connect?", self._client_id)

    def _lost(self, exc: Exception) -> None:
        with self._changed:
            was, self._is_connected = self._is_connected, False
            self._changed.notify_all()
        if was and not self._stopping.is_set():
            log.warning("receipt connection lost (%s): receipts wait in a queue until it is back", exc)

    def _outgoing(self) -> bytes:
        """What is queued, within the broker's Receive Maximum, as one write."""
        with self._changed:
            packets, self._resend = self._resend, []
            room = self._window - len(self._inflight)
            while self._queue and room > 0:
                topic, payload = self._queue.popleft()
                mid = self._take_mid()
                packet = publish_packet(topic, payload, mid)
                if len(packet) > self._broker_max_packet:
                    log.error("a receipt of %d bytes is over the broker's maximum packet size: dropped", len(packet))
                    continue
                self._inflight[mid] = packet
                packets.append(packet)
                room -= 1
        return b"".join(packets)

    def _take_mid(self) -> int:
        mid = self._next_mid
        while mid in self._inflight:
            mid = mid % 65535 + 1
        self._next_mid = mid % 65535 + 1
        return mid

    def _packets(self, packets: list[Packet]) -> None:
        acked = refused = 0
        with self._changed:
            for packet in packets:
                if packet.kind == PUBACK:
                    mid, reason = parse_puback(packet.body)
                    acked += self._inflight.pop(mid, None) is not None
                    refused += reason >= 0x80
                elif packet.kind == DISCONNECT:
                    raise ConnectionError(f"the broker disconnected us (reason 0x{packet.body[:1].hex() or '00'})")
                elif packet.kind != PINGRESP:
                    raise MqttWireError(f"unexpected packet type {packet.kind} on a publish-only connection")
            if acked:
                self._changed.notify_all()
        if refused:
            self._count_refusals(refused)

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
