"""The gateway's MQTT connections: MQTT 5 packets as bytes (pure), then the receipt connection against a real
mosquitto (the ingest connection is exercised by every gateway test and the fault matrix)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import CollectorRegistry

from vehicle_ingest.gateway.broker import Mosquitto, free_port
from vehicle_ingest.gateway.mqtt_source import Delivery, MqttSettings, MqttSource
from vehicle_ingest.gateway.mqtt_wire import (
    CONNACK,
    PUBACK,
    PUBLISH,
    MqttWireError,
    Packet,
    PacketSplitter,
    Publish,
    connect_packet,
    parse_connack,
    parse_puback,
    parse_publish,
    parse_suback,
    puback_packet,
    publish_packet,
    subscribe_packet,
    unsubscribe_packet,
    varint,
)
from vehicle_ingest.gateway.receipt_sender import ReceiptSender
from vehicle_ingest.metrics import Metrics

# -- bytes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (268_435_455, b"\xff\xff\xff\x7f")],
)
def test_variable_byte_integers_match_the_standards_examples(n, encoded):
    assert varint(n) == encoded


def test_a_publish_packet_splits_back_into_its_fields():
    packet = publish_packet(b"vi/v1/X/receipt", b"payload" * 40, 513)
    ((kind, flags, body),) = PacketSplitter().feed(packet)
    assert (kind, flags) == (PUBLISH, 0x2) and packet[0] == 0x32  # QoS 1, not DUP, not retained
    assert body[:2] == b"\x00\x0f" and body[2:17] == b"vi/v1/X/receipt"
    assert body[17:19] == b"\x02\x01" and body[19] == 0  # packet id 513, no properties
    assert body[20:] == b"payload" * 40
    assert parse_publish(Packet(kind, flags, body)) == Publish(b"vi/v1/X/receipt", 513, 1, b"payload" * 40)


def test_a_qos_0_publish_with_properties_parses_without_a_packet_id():
    props = b"\x01\x01" + b"\x03\x00\x03a/b"  # payload format indicator, content type
    body = b"\x00\x01t" + varint(len(props)) + props + b"data"
    assert parse_publish(Packet(PUBLISH, 0x0, body)) == Publish(b"t", 0, 0, b"data")
    with pytest.raises(MqttWireError, match="run past"):
        parse_publish(Packet(PUBLISH, 0x2, b"\x00\x01t\x00\x01\x09"))
    # A topic length beyond the packet (a hostile or broken broker): refused, never an IndexError
    # that would end the connection's thread.
    for body in (b"\x00\x09t", b"\x00\x01t\x00", b"\xff\xff"):
        with pytest.raises(MqttWireError, match="runs past"):
            parse_publish(Packet(PUBLISH, 0x2, body))


def test_packets_arriving_a_byte_at_a_time_come_out_whole_and_in_order():
    stream = b"".join([b"\x40\x02\x00\x01", b"\x40\x03\x00\x02\x87", b"\xd0\x00", publish_packet(b"t", b"x" * 300, 3)])
    splitter, out = PacketSplitter(), []
    for i in range(len(stream)):
        out += splitter.feed(stream[i : i + 1])
    assert [p.kind for p in out] == [PUBACK, PUBACK, 13, PUBLISH]
    assert parse_puback(out[0].body) == (1, 0) and parse_puback(out[1].body) == (2, 0x87)


def test_a_connack_gives_the_brokers_receive_maximum_and_packet_size():
    # reason 0, properties: session expiry (u32), receive maximum 20, a reason string, maximum packet size 1 MiB
    props = b"\x11\x00\x00\x00\x00" + b"\x21\x00\x14" + b"\x1f\x00\x02ok" + b"\x27\x00\x10\x00\x00"
    connack = parse_connack(b"\x00\x00" + varint(len(props)) + props)
    assert (connack.reason, connack.receive_maximum, connack.maximum_packet_size) == (0, 20, 1 << 20)
    assert parse_connack(b"\x00\x87").reason == 0x87


@pytest.mark.parametrize(
    ("feed", "problem"),
    [
        (b"\x40\xff\xff\xff\xff\x01", "variable byte integer"),  # a fifth length byte
        (b"\x30" + varint(2 << 20), "a packet of"),  # over the splitter's limit, refused before it is read
    ],
)
def test_hostile_lengths_from_the_broker_are_refused(feed, problem):
    with pytest.raises(MqttWireError, match=problem):
        PacketSplitter().feed(feed)


def test_a_connack_with_an_unknown_property_or_a_short_body_is_refused():
    with pytest.raises(MqttWireError, match="unknown property"):
        parse_connack(b"\x00\x00\x02\x7e\x00")
    with pytest.raises(MqttWireError, match="CONNACK of 1"):
        parse_connack(b"\x00")


def test_the_connect_packet_is_mqtt_5_with_clean_start():
    ((kind, _, body),) = PacketSplitter().feed(connect_packet("gw-receipts", 30))
    assert kind == 1 and body[:6] == b"\x00\x04MQTT" and body[6] == 5 and body[7] == 0x02
    assert body[8:10] == b"\x00\x1e" and body[10] == 0 and body[11:] == b"\x00\x0bgw-receipts"


def test_a_resuming_connect_asks_for_its_session_and_bounds_the_window():
    ((_, _, body),) = PacketSplitter().feed(connect_packet("gw", 30, session_expiry_s=86_400, receive_max=2000))
    assert body[7] == 0x00  # clean start 0: resume the session
    assert body[10:19] == b"\x08" + b"\x11\x00\x01\x51\x80" + b"\x21\x07\xd0"
    assert parse_connack(b"\x01\x00").session_present and not parse_connack(b"\x00\x00").session_present
    assert CONNACK == 2


def test_subscribe_unsubscribe_and_their_acks():
    ((kind, flags, body),) = PacketSplitter().feed(subscribe_packet(7, ["$share/g/vi/v1/+/signals"]))
    assert (kind, flags) == (8, 0x2) and body[:3] == b"\x00\x07\x00" and body[-1] == 1  # QoS 1 option
    ((kind, flags, body),) = PacketSplitter().feed(unsubscribe_packet(8, ["vi/v1/+/+"]))
    assert (kind, flags, body) == (10, 0x2, b"\x00\x08\x00\x00\x09vi/v1/+/+")
    assert parse_suback(b"\x00\x07\x00\x01\x87") == (7, [1, 0x87])
    assert puback_packet(0x1234) == b"\x40\x02\x12\x34"


# -- against mosquitto --------------------------------------------------------------------------


class Listener:
    """A paho subscriber to every receipt topic, recording (topic, payload)."""

    def __init__(self, url_port: int) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("vi/v1/+/receipt", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((message.topic, message.payload))

    def wait_for(self, n: int, timeout: float = 30) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _receipts(n: int, tag: str = "") -> list[tuple[str, bytes]]:
    return [(f"vi/v1/VIN{i % 997:014d}/receipt", f"{tag}receipt {i}".encode()) for i in range(n)]


@pytest.fixture
def sender_on(tmp_path: Path) -> Iterator:
    made: list[ReceiptSender] = []

    def make(broker: Mosquitto, max_queued: int = 100_000) -> ReceiptSender:
        settings = MqttSettings(url=broker.url, client_id="gw", keepalive_s=5, max_queued_publishes=max_queued)
        sender = ReceiptSender(settings)
        sender.start()
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


def _wait(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


@pytest.mark.integration
def test_every_receipt_reaches_a_subscriber_within_the_brokers_receive_maximum(tmp_path, sender_on):
    """mosquitto with max_inflight_messages 5 advertises Receive Maximum 5 and disconnects a client that
    sends more unacknowledged: 3,000 receipts arrive, in order, on one connection."""
    broker = Mosquitto(tmp_path / "broker", free_port(), extra_config=("max_inflight_messages 5",))
    broker.start()
    listener = Listener(broker.port)
    try:
        sender = sender_on(broker)
        assert _wait(lambda: sender.connected)
        sent = _receipts(3000)
        assert sender.publish_many(sent) == 0
        sender.flush(30)
        assert listener.wait_for(len(sent)) == sent
        assert sender.connections == 1 and sender.refused == 0
    finally:
        listener.close()
        broker.stop()


@pytest.mark.integration
def test_receipts_queued_while_the_broker_is_down_go_out_when_it_is_back(tmp_path, sender_on):
    broker = Mosquitto(tmp_path / "broker", free_port())
    broker.start()
    sender = sender_on(broker)
    assert _wait(lambda: sender.connected)
    broker.stop()
    assert _wait(lambda: not sender.connected)
    queued = _receipts(500, "while down ")
    assert sender.publish_many(queued) == 0
    broker.start()  # same port
    listener = Listener(broker.port)
    try:
        assert _wait(lambda: sender.connected, timeout=40), "no reconnect within the backoff"
        sender.flush(30)
        assert sorted(listener.wait_for(len(queued))) == sorted(queued)
        assert sender.connections == 2
    finally:
        listener.close()
        broker.stop()


@pytest.mark.integration
def test_a_full_queue_drops_and_says_how_many(tmp_path, sender_on):
    broker = Mosquitto(tmp_path / "broker", free_port())
    broker.start()
    broker.stop()  # nothing listens: everything stays queued
    sender = sender_on(broker, max_queued=100)
    assert sender.publish_many(_receipts(60)) == 0
    assert sender.publish_many(_receipts(60)) == 20
    assert not sender.publish("vi/v1/VIN00000000000001/receipt", b"one more")


async def _take(source: MqttSource, n: int, timeout: float = 20) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            got.append(await asyncio.wait_for(source.queue.get(), 0.5))
        except TimeoutError:
            continue
    return got


@pytest.mark.integration
def test_a_resumed_session_delivers_its_backlog_once_and_only_acked_messages_stay_gone(tmp_path):
    """The ingest connection: what was published while it was away arrives on resume (mosquitto sends it
    right behind CONNACK, in the same read); what it settled is not redelivered, what it did not is."""
    topics = [(f"vi/v1/VIN{i:014d}/signals", f"message {i}".encode()) for i in range(300)]

    async def run(broker: Mosquitto) -> tuple[list[Delivery], list[Delivery]]:
        settings = MqttSettings(url=broker.url, client_id="gw-resume", keepalive_s=5)
        first = MqttSource(settings, Metrics.create(CollectorRegistry()), asyncio.get_running_loop())
        first.start()
        assert await asyncio.to_thread(_wait, lambda: first.connected)
        await asyncio.sleep(0.3)  # subscribed
        first.close()
        publisher = ReceiptSender(MqttSettings(url=broker.url, client_id="vehicle"))  # any QoS 1 publisher
        publisher.start()
        assert await asyncio.to_thread(_wait, lambda: publisher.connected)
        publisher.publish_many(topics)
        await asyncio.to_thread(publisher.flush, 10)
        publisher.close()
        second = MqttSource(settings, Metrics.create(CollectorRegistry()), asyncio.get_running_loop())
        second.start()
        backlog = await _take(second, len(topics))
        second.settle(backlog[:100])  # stored: acked
        await asyncio.sleep(0.3)
        second.close()
        third = MqttSource(settings, Metrics.create(CollectorRegistry()), asyncio.get_running_loop())
        third.start()
        again = await _take(third, len(topics) - 100)
        third.close()
        return backlog, again

    broker = Mosquitto(tmp_path / "broker", free_port())
    broker.start()
    try:
        backlog, again = asyncio.run(run(broker))
    finally:
        broker.stop()
    assert [(d.topic, d.payload) for d in backlog] == topics
    assert sorted((d.topic, d.payload) for d in again) == sorted(topics[100:])
