"""The gateway's MQTT 5 subscription, with manual acks, on its own connection thread (`MqttConnection`).

It resumes its session (clean start 0, a session expiry), so what it has not acked comes back
after a reconnect; it bounds what is unacked with Receive Maximum, and stops reading the socket
(TCP backpressure) when the broker sends beyond it. Each message is handed to the asyncio loop
as a `Delivery`. Nothing is acked until `settle()`, which the gateway calls only after the batch
holding the message is stored. Acks of deliveries from an earlier connection are dropped on
purpose: the broker redelivers those after the reconnect, and the store's identity check keeps
the copy from being stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from vehicle_ingest.gateway.mqtt_connection import (
    BrokerDisconnectedError,
    ConnectRefusedError,
    MqttConnection,
    TlsFiles,
)
from vehicle_ingest.gateway.mqtt_wire import (
    DISCONNECT,
    PINGRESP,
    PUBLISH,
    SUBACK,
    UNSUBACK,
    Connack,
    MqttWireError,
    Packet,
    connect_packet,
    parse_publish,
    parse_suback,
    puback_packet,
    subscribe_packet,
    unsubscribe_packet,
)
from vehicle_ingest.metrics import Metrics

__all__ = ["Delivery", "MqttSettings", "MqttSource"]

log = logging.getLogger(__name__)

_SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: another client connected with our client id
_CONNECT_LOG_EVERY_S = 30.0
# mosquitto 2.0.11 closes a taken-over session without that reason: what shows is a connection that keeps
# dropping seconds after it opened. Three such drops within two minutes are reported as a takeover.
_FLAP_UPTIME_S, _FLAP_WINDOW_S, _FLAPS = 5.0, 120.0, 3
_SUBSCRIBE_MID, _UNSUBSCRIBE_MID = 1, 2  # our only packet ids: the broker picks the ids of what it sends
_MAX_PACKET = 268_435_460  # the protocol's largest: oversize payloads reach the pipeline, which dead-letters them


@dataclass(frozen=True, slots=True)
class MqttSettings:
    url: str
    client_id: str
    # The three head-unit streams, not vi/v1/+/+: that would bring every receipt we publish back to us.
    topic_filters: tuple[str, ...] = ("vi/v1/+/signals", "vi/v1/+/events", "vi/v1/+/can")
    share_group: str = ""  # non-empty: subscribe as $share/<group>/<filter>
    session_expiry_s: int = 86_400
    receive_max: int = 2000  # unacked window the broker may keep in flight to us
    keepalive_s: int = 30
    tls_ca: str = ""  # PEM CA file; empty: the system CAs
    tls_cert: str = ""  # PEM client certificate (its CN is our broker user name)
    tls_key: str = ""
    max_queued_publishes: int = 100_000  # receipts waiting for the broker; more are dropped (and resent later)
    legacy_filters: tuple[str, ...] = ("vi/v1/+/+",)  # left in resumed sessions by older gateways

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_ca, self.tls_cert, self.tls_key)

    def shared(self, topic_filter: str) -> str:
        return f"$share/{self.share_group}/{topic_filter}" if self.share_group else topic_filter

    @property
    def subscriptions(self) -> list[str]:
        return [self.shared(f) for f in self.topic_filters]

    @property
    def subscription(self) -> str:
        """The subscriptions as one line, for logs."""
        return ", ".join(self.subscriptions)


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


class MqttSource(MqttConnection):
    def __init__(self, settings: MqttSettings, metrics: Metrics, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(settings.url, settings.keepalive_s, settings.tls, "mqtt-source", max_packet=_MAX_PACKET)
        self.settings = settings
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._metrics = metrics
        self._loop = loop
        self._lock = threading.Lock()
        self._generation = 0
        self._is_connected = False
        self._accepting = True
        self._unacked = 0
        self._acks = bytearray()  # PUBACKs of settled deliveries of this connection, written by the thread
        self._arrived: list[Delivery] = []  # filled by the connection thread, moved to `queue` on the loop
        self._held: list[Delivery] = []  # read beyond Receive Maximum: handed over as settle() frees room
        self._connect_failures = 0
        self._last_failure_log = 0.0
        self._connected_at = 0.0
        self._short_sessions: list[float] = []  # when connections that lasted < _FLAP_UPTIME_S dropped

    @property
    def connected(self) -> bool:
        return self._is_connected

    @property
    def unacked(self) -> int:
        """Deliveries handed to the gateway and not yet settled."""
        return self._unacked

    def stop_accepting(self) -> None:
        """Take no new deliveries (the socket is no longer read); the broker keeps them for the next session."""
        with self._lock:
            self._accepting = False
        self._wake()

    def close(self) -> None:
        self.stop_accepting()
        super().close()
        self._metrics.connected.set(0)

    def settle(self, deliveries: Sequence[Delivery]) -> int:
        """Ack stored deliveries of the current connection; returns how many were acked.

        Deliveries of an earlier connection are only forgotten: the broker
        redelivers them on the resumed session.
        """
        acked = 0
        with self._lock:
            for d in deliveries:
                if d.qos > 0 and d.generation == self._generation and self._is_connected:
                    self._acks += puback_packet(d.mid)
                    acked += 1
            self._unacked -= len(deliveries)
            wake_loop = self._release_held()
            self._metrics.unacked.set(self._unacked)
        if wake_loop:
            self._loop.call_soon_threadsafe(self._hand_over)
        self._wake()
        return acked

    def _release_held(self) -> bool:
        """(under the lock) Move held deliveries into the freed room; True when the loop must be woken."""
        room = self.settings.receive_max - self._unacked
        if not self._held or room <= 0:
            return False
        wake = not self._arrived
        released, self._held = self._held[:room], self._held[room:]
        self._arrived += released
        self._unacked += len(released)
        return wake

    # -- the connection thread ----------------------------------------------------------------

    def _connect_packet(self) -> bytes:
        s = self.settings
        return connect_packet(s.client_id, s.keepalive_s, s.session_expiry_s, s.receive_max)

    def _connected(self, sock: socket.socket, connack: Connack) -> None:
        self._connect_failures = 0
        self._connected_at = time.monotonic()
        with self._lock:
            self._generation += 1
            self._is_connected = True
            self._acks.clear()  # acks of the last connection: the broker redelivers those messages
            self._held.clear()  # never handed over nor acked: the broker redelivers them too
        self._metrics.connected.set(1)
        if self._generation > 1:
            if not connack.session_present:  # counted before the reconnect, which is what watchers wait for
                self._report_lost_session()
            self._metrics.reconnects.inc()
        s = self.settings
        sock.sendall(
            subscribe_packet(_SUBSCRIBE_MID, s.subscriptions)
            + unsubscribe_packet(_UNSUBSCRIBE_MID, [s.shared(f) for f in s.legacy_filters])
        )
        log.info(
            "mqtt connected (generation %d, session %s), subscribed to %s",
            self._generation,
            "resumed" if connack.session_present else "new",
            s.subscription,
        )

    def _report_lost_session(self) -> None:
        """We always resume (clean start 0), so a reconnect without a session means the broker no
        longer had it: restarted without persistence or killed before saving it, expired (we were away
        longer than the session expiry), taken over by another client with our id and a clean start, or
        answered by a broker node that does not share session state. What it had queued for this
        session is gone, and until we subscribe again it routes our share of the topics to no one.
        Only the broker side can lose this; we make it visible."""
        self._metrics.sessions_lost.inc()
        log.error(
            "mqtt broker holds no session for client id %r on reconnect: messages it had queued for it are lost",
            self.settings.client_id,
        )

    def _connect_failed(self, exc: Exception) -> None:
        """Counted always, logged every 30 s (the thread retries with backoff)."""
        self._metrics.connect_failures.inc()
        self._connect_failures += 1
        now = time.monotonic()
        if isinstance(exc, ConnectRefusedError):
            log.error("mqtt broker %s refused the connection: %s", self.settings.url, exc)
            return
        if self._connect_failures > 1 and now - self._last_failure_log < _CONNECT_LOG_EVERY_S:
            return
        self._last_failure_log = now
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        log.error(
            "cannot connect to the mqtt broker at %s: %s (%d attempts so far; retrying)",
            self.settings.url,
            why,
            self._connect_failures,
        )

    def _lost(self, exc: Exception) -> None:
        with self._lock:
            was_connected, self._is_connected = self._is_connected, False
        self._metrics.connected.set(0)
        if not was_connected or self._stopping.is_set():
            return
        taken_over = isinstance(exc, BrokerDisconnectedError) and exc.reason == _SESSION_TAKEN_OVER
        if taken_over or self._keeps_dropping():
            self._metrics.session_takeovers.inc()
            log.error(
                "mqtt session taken over (%s): another client connects with our client id %r and the broker gives it"
                " our session and our share of the stream. Give every gateway process its own client_id.",
                exc,
                self.settings.client_id,
            )
            return
        log.warning("mqtt disconnected: %s", exc)

    def _keeps_dropping(self) -> bool:
        now = time.monotonic()
        if now - self._connected_at >= _FLAP_UPTIME_S:
            return False
        self._short_sessions = [t for t in self._short_sessions if now - t < _FLAP_WINDOW_S] + [now]
        return len(self._short_sessions) >= _FLAPS

    def _outgoing(self) -> bytes:
        with self._lock:
            out, self._acks = bytes(self._acks), bytearray()
        return out

    def _reading(self) -> bool:
        """Read only while accepting and within Receive Maximum: beyond it (mosquitto 2.0.11 sends more after
        PUBACKs, see docs/SCALING.md) TCP backpressure keeps the excess at the broker. What one read brought
        beyond the window is held here, never handed over: the gateway sees at most Receive Maximum
        unacked deliveries, and memory is bounded by the window plus one read."""
        return self._accepting and not self._held and self._unacked < self.settings.receive_max

    def _packets(self, packets: list[Packet]) -> None:
        arrived = []
        for packet in packets:
            if packet.kind == PUBLISH:
                arrived.append(self._delivery(packet))
            elif packet.kind == SUBACK:
                self._check_suback(packet.body)
            elif packet.kind == DISCONNECT:
                raise BrokerDisconnectedError(packet.body[0] if packet.body else 0)
            elif packet.kind not in (UNSUBACK, PINGRESP):
                raise MqttWireError(f"unexpected packet type {packet.kind} from the broker")
        if arrived:
            self._arrive(arrived)

    def _delivery(self, packet: Packet) -> Delivery:
        publish = parse_publish(packet)
        if publish.qos == 2:  # we subscribe at QoS 1, so the broker may not send QoS 2
            raise MqttWireError("a QoS 2 PUBLISH on a QoS 1 subscription")
        try:
            topic = publish.topic.decode()
        except UnicodeDecodeError:  # the pipeline rejects the topic (bad_topic) with the reason
            topic = publish.topic.decode("utf-8", "replace")
        return Delivery(topic, publish.payload, publish.mid, publish.qos, self._generation)

    def _arrive(self, arrived: list[Delivery]) -> None:
        with self._lock:
            if not self._accepting:  # stopping: unacked, so the broker keeps them for the next session
                return
            wake = not self._arrived
            room = max(0, self.settings.receive_max - self._unacked)
            self._arrived += arrived[:room]
            self._held += arrived[room:]  # one read can carry more than the window: kept, not handed over
            self._unacked += min(room, len(arrived))
            overrun = len(arrived) > room
            wake = wake and bool(self._arrived)
            self._metrics.unacked.set(self._unacked)
        if overrun:
            self._metrics.window_overruns.inc()
        self._metrics.received.inc(len(arrived))
        if wake:  # one loop wake-up per burst, not per message
            self._loop.call_soon_threadsafe(self._hand_over)

    def _check_suback(self, body: bytes) -> None:
        _, codes = parse_suback(body)
        refused = [f for f, code in zip(self.settings.subscriptions, codes, strict=False) if code >= 0x80]
        if refused:
            log.error("mqtt broker %s refused the subscriptions %s (ACL?)", self.settings.url, ", ".join(refused))

    def _hand_over(self) -> None:
        """On the event loop: move what arrived, in arrival order, to the queue."""
        with self._lock:
            arrived, self._arrived = self._arrived, []
        for delivery in arrived:
            self.queue.put_nowait(delivery)
