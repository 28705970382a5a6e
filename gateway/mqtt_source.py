"""MQTT 5 source with manual acks (paho-mqtt 2.x).

paho runs its network loop in its own thread and reconnects by itself; each
message is handed to the asyncio loop as a `Delivery`. Nothing is acked
until `ack()` is called, which the gateway does only after the batch holding
the message is stored. Acks of deliveries from an earlier connection are
dropped on purpose: the broker redelivers those after the reconnect, and the
store's identity check keeps the copy from being stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vehicle_ingest.metrics import Metrics
from vehicle_ingest.mqtt_url import parse_mqtt_url

__all__ = ["Delivery", "MqttSettings", "MqttSource"]

log = logging.getLogger(__name__)

_SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: another client connected with our client id
_CONNECT_LOG_EVERY_S = 30.0
# mosquitto 2.0.11 closes a taken-over session without that reason: what shows is a connection that keeps
# dropping seconds after it opened. Three such drops within two minutes are reported as a takeover.
_FLAP_UPTIME_S, _FLAP_WINDOW_S, _FLAPS = 5.0, 120.0, 3


def _why_unreachable(url: str) -> str:
    """What a plain TCP connection to the broker says (paho's failure callback carries no reason)."""
    host, port, _ = parse_mqtt_url(url)
    try:
        with socket.create_connection((host, port), timeout=3):
            return "the TCP connection works now; the MQTT handshake failed (TLS or protocol?)"
    except OSError as exc:
        return exc.strerror or str(exc)


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

    def endpoint(self, client: mqtt.Client) -> tuple[str, int]:
        """(host, port) to connect `client` to, with TLS set on it when the URL is mqtts://."""
        host, port, tls = parse_mqtt_url(self.url)
        if tls:
            client.tls_set(ca_certs=self.tls_ca or None, certfile=self.tls_cert or None, keyfile=self.tls_key or None)
        return host, port

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


class MqttSource:
    def __init__(self, settings: MqttSettings, metrics: Metrics, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._metrics = metrics
        self._loop = loop
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # signalled when settle() frees window slots
        self._generation = 0
        self._connected = False
        self._accepting = True
        self._unacked = 0
        self._arrived: list[Delivery] = []  # filled by the paho thread, moved to `queue` on the loop
        self._connect_failures = 0
        self._last_failure_log = 0.0
        self._connected_at = 0.0
        self._short_sessions: list[float] = []  # when connections that lasted < _FLAP_UPTIME_S dropped
        self._client = self._build_client()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def unacked(self) -> int:
        """Deliveries handed to the gateway and not yet settled."""
        return self._unacked

    def _build_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,  # before CONNECT, so replayed session messages are not auto-acked
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(self.settings.max_queued_publishes)
        return client

    def start(self) -> None:
        host, port = self.settings.endpoint(self._client)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_max
        self._client.connect_async(host, port, self.settings.keepalive_s, clean_start=False, properties=props)
        self._client.loop_start()

    def stop_accepting(self) -> None:
        """Take no new deliveries; the broker keeps them for the next session."""
        with self._room:
            self._accepting = False
            self._room.notify_all()

    def close(self) -> None:
        self.stop_accepting()  # releases a network thread waiting for window room
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False
        self._metrics.connected.set(0)

    def settle(self, deliveries: Sequence[Delivery]) -> int:
        """Ack stored deliveries of the current connection; returns how many were acked.

        Deliveries of an earlier connection are only forgotten: the broker
        redelivers them on the resumed session.
        """
        acked = 0
        with self._lock:
            for d in deliveries:
                if d.qos > 0 and d.generation == self._generation and self._connected:
                    self._client.ack(d.mid, d.qos)
                    acked += 1
            self._unacked -= len(deliveries)
            self._metrics.unacked.set(self._unacked)
            self._room.notify_all()
        return acked

    # -- paho thread ------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags, rc: object, _props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            self._metrics.connect_failures.inc()
            log.error("mqtt broker %s refused the connection: %s", self.settings.url, rc)
            return
        self._connect_failures = 0
        self._connected_at = time.monotonic()
        with self._lock:
            self._generation += 1
            self._connected = True
        self._metrics.connected.set(1)
        if self._generation > 1:
            if not flags.session_present:  # counted before the reconnect, which is what watchers wait for
                self._report_lost_session()
            self._metrics.reconnects.inc()
        client.subscribe([(f, mqtt.SubscribeOptions(qos=1)) for f in self.settings.subscriptions])
        client.unsubscribe([self.settings.shared(f) for f in self.settings.legacy_filters])
        log.info(
            "mqtt connected (generation %d, session %s), subscribed to %s",
            self._generation,
            "resumed" if flags.session_present else "new",
            self.settings.subscription,
        )

    def _report_lost_session(self) -> None:
        """We always resume (clean_start=False), so a reconnect without a session means the broker no
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

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        """No TCP connection (paho retries on its own and gives no reason): counted, and logged every 30 s."""
        self._metrics.connect_failures.inc()
        self._connect_failures += 1
        now = time.monotonic()
        if self._connect_failures > 1 and now - self._last_failure_log < _CONNECT_LOG_EVERY_S:
            return
        self._last_failure_log = now
        log.error(
            "cannot connect to the mqtt broker at %s: %s (%d attempts so far; retrying)",
            self.settings.url,
            _why_unreachable(self.settings.url),
            self._connect_failures,
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        with self._lock:
            self._connected = False
        self._metrics.connected.set(0)
        if getattr(rc, "value", None) == _SESSION_TAKEN_OVER or self._keeps_dropping():
            self._metrics.session_takeovers.inc()
            log.error(
                "mqtt session taken over (%s): another client connects with our client id %r and the broker gives it"
                " our session and our share of the stream. Give every gateway process its own client_id.",
                rc,
                self.settings.client_id,
            )
            return
        log.warning("mqtt disconnected: %s", rc)

    def _keeps_dropping(self) -> bool:
        now = time.monotonic()
        if now - self._connected_at >= _FLAP_UPTIME_S:
            return False
        self._short_sessions = [t for t in self._short_sessions if now - t < _FLAP_WINDOW_S] + [now]
        return len(self._short_sessions) >= _FLAPS

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        # Must never raise: an exception here would leave the message unacked
        # and poison every later session with it.
        if not self._accepting:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        with self._room:
            if self._unacked >= self.settings.receive_max:
                self._wait_for_room()
            if not self._accepting:
                return
            self._arrived.append(Delivery(topic, bytes(msg.payload), msg.mid, msg.qos, self._generation))
            self._unacked += 1
            self._metrics.unacked.set(self._unacked)
            wake = len(self._arrived) == 1
        self._metrics.received.inc()
        if wake:  # one loop wake-up per burst, not per message
            self._loop.call_soon_threadsafe(self._hand_over)

    def _wait_for_room(self) -> None:
        """The broker sent beyond our Receive Maximum (mosquitto 2.0.11 does after PUBACKs, see
        docs/SCALING.md): hold the network thread so TCP backpressure keeps the excess at the
        broker, and gateway memory stays bounded by the window."""
        self._metrics.window_overruns.inc()
        while self._unacked >= self.settings.receive_max and self._accepting:
            self._room.wait(0.5)

    def _hand_over(self) -> None:
        """On the event loop: move what arrived, in arrival order, to the queue."""
        with self._lock:
            arrived, self._arrived = self._arrived, []
        for delivery in arrived:
            self.queue.put_nowait(delivery)
