"""TLS client certificates and the ACL of gateway/deploy/mosquitto/, on a real mosquitto.

Certificates come from the deployment's own gen-certs.sh (openssl) at test time,
and the broker runs the deployment's mosquitto-tls.conf and acl with only paths
and the port rewritten: what is proven here is what operators deploy.
"""

from __future__ import annotations

import getpass
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import speed_message
from vehicle_ingest.gateway.broker import free_port, mosquitto_path, stop_process, wait_for_port
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.mqtt_source import MqttSettings
from vehicle_ingest.gateway.receipt_sender import ReceiptSender
from vehicle_ingest.receipts import Receipt, decode_receipt

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parent.parent / "gateway" / "deploy" / "mosquitto"
VIN_A = "SMXTLSVEHXCLE000A"
VIN_B = "SMXTLSVEHXCLE000B"
GATEWAY_CN = "vehicle-ingest-gateway"
NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    subprocess.run(["sh", str(DEPLOY / "gen-certs.sh"), str(out), "localhost", VIN_A, VIN_B, GATEWAY_CN], check=True)
    return out


@pytest.fixture(scope="module")
def tls_port(pki: Path, tmp_path_factory) -> Iterator[int]:
    """mosquitto-tls.conf with the cert paths, the ACL path, the port and the data directory rewritten."""
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
    work, port = tmp_path_factory.mktemp("tls-broker"), free_port()
    conf = (DEPLOY / "mosquitto-tls.conf").read_text()
    for old, new in (
        ("/mosquitto/certs/", f"{pki}/"),
        ("/mosquitto/config/acl", str(DEPLOY / "acl")),
        ("/mosquitto/data/", f"{work}/"),
        ("listener 8883", f"listener {port} 127.0.0.1"),
        ("log_dest stdout", f"log_dest file {work / 'mosquitto.log'}"),
    ):
        assert old in conf, old
        conf = conf.replace(old, new)
    # Run as us: started as root, mosquitto would switch to user `mosquitto`, which cannot read
    # the pytest directories (in a deployment, broker.key belongs to that user instead).
    (work / "mosquitto.conf").write_text(conf + f"user {getpass.getuser()}\n")
    process = subprocess.Popen([mosquitto_path(), "-c", str(work / "mosquitto.conf")])
    try:
        wait_for_port(port)
        yield port
    finally:
        stop_process(process)


class Client:
    """A paho MQTT 5 client over TLS that records what it receives and the PUBACK reason codes."""

    def __init__(self, port: int, pki: Path, cn: str | None, client_id: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.puback: dict[int, int] = {}
        self._connected = threading.Event()
        self.connect_rc: object = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        certfile = str(pki / f"{cn}.crt") if cn else None
        keyfile = str(pki / f"{cn}.key") if cn else None
        self.client.tls_set(ca_certs=str(pki / "ca.crt"), certfile=certfile, keyfile=keyfile)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.puback.__setitem__(mid, rc.value)
        self.client.connect("localhost", port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(10), "no CONNACK"

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.connect_rc = rc
        self._connected.set()

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 10
        while info.mid not in self.puback and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.puback[info.mid]

    def subscribe(self, topic_filter: str) -> None:
        granted = threading.Event()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: (self.__setattr__("granted", codes), granted.set())
        self.client.subscribe(topic_filter, qos=1)
        assert granted.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(tls_port: int, pki: Path) -> Iterator[dict[str, Client]]:
    """Vehicle A, and a gateway-identity reader of every vehicle topic."""
    made = {"a": Client(tls_port, pki, VIN_A, "vehicle-a"), "reader": Client(tls_port, pki, GATEWAY_CN, "reader")}
    made["reader"].subscribe("vi/v1/+/+")
    yield made
    for c in made.values():
        c.close()


def _wait_for(client: Client, topic: str, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while topic not in [t for t, _ in client.received] and time.monotonic() < deadline:
        time.sleep(0.02)
    return [t for t, _ in client.received]


def test_vehicle_publishes_to_its_own_topics(clients):
    streams = [f"vi/v1/{VIN_A}/{s}" for s in ("signals", "events", "can")]
    assert [clients["a"].publish(topic, b"own") for topic in streams] == [0, 0, 0]
    assert _wait_for(clients["reader"], streams[-1]) == streams


def test_a_vehicle_reads_its_own_receipts_only_and_only_the_gateway_writes_them(clients, tls_port, pki):
    a, b = clients["a"], Client(tls_port, pki, VIN_B, "vehicle-b-receipts")
    gateway = Client(tls_port, pki, GATEWAY_CN, "gateway-receipts")
    try:
        a.subscribe("vi/v1/+/receipt")  # granted, but `read` is applied per message: only A's own arrive
        b.subscribe(f"vi/v1/{VIN_B}/receipt")
        assert a.publish(f"vi/v1/{VIN_B}/receipt", b"forged receipt") == NOT_AUTHORIZED
        assert a.publish(f"vi/v1/{VIN_A}/receipt", b"self-receipt") == NOT_AUTHORIZED
        assert gateway.publish(f"vi/v1/{VIN_B}/receipt", b"for B") == 0
        assert gateway.publish(f"vi/v1/{VIN_A}/receipt", b"for A") == 0
        assert _wait_for(a, f"vi/v1/{VIN_A}/receipt") == [f"vi/v1/{VIN_A}/receipt"]
        assert _wait_for(b, f"vi/v1/{VIN_B}/receipt") == [f"vi/v1/{VIN_B}/receipt"]
        assert [p for _, p in a.received] == [b"for A"] and [p for _, p in b.received] == [b"for B"]
        assert [t for t, _ in clients["reader"].received if t.endswith("/receipt")] == []  # the gateway reads none
    finally:
        b.close()
        gateway.close()


def _receipt_sender(tls_port: int, pki: Path, cn: str) -> ReceiptSender:
    settings = MqttSettings(
        url=f"mqtts://localhost:{tls_port}",
        client_id=f"{cn}-sender",
        tls_ca=str(pki / "ca.crt"),
        tls_cert=str(pki / f"{cn}.crt"),
        tls_key=str(pki / f"{cn}.key"),
    )
    sender = ReceiptSender(settings)
    sender.start()
    return sender


def test_the_receipt_connection_speaks_mutual_tls_and_counts_what_the_acl_refuses(clients, tls_port, pki):
    """The gateway's own receipt connection (not paho): over the deployment's TLS listener with the gateway
    identity its receipts arrive; with a vehicle's identity the broker refuses them and the sender counts it."""
    clients["a"].subscribe(f"vi/v1/{VIN_A}/receipt")
    gateway, vehicle = _receipt_sender(tls_port, pki, GATEWAY_CN), _receipt_sender(tls_port, pki, VIN_B)
    try:
        assert gateway.publish(f"vi/v1/{VIN_A}/receipt", b"from the gateway")
        gateway.flush(10)
        assert _wait_for(clients["a"], f"vi/v1/{VIN_A}/receipt") == [f"vi/v1/{VIN_A}/receipt"]
        assert vehicle.publish(f"vi/v1/{VIN_A}/receipt", b"forged by B")
        deadline = time.monotonic() + 10
        while vehicle.refused == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert vehicle.refused == 1 and vehicle.connections == 1
        assert clients["a"].received == [(f"vi/v1/{VIN_A}/receipt", b"from the gateway")]
    finally:
        gateway.close()
        vehicle.close()


def test_vehicle_cannot_publish_as_another_vehicle(clients):
    a, reader = clients["a"], clients["reader"]
    assert a.publish(f"vi/v1/{VIN_B}/signals", b"forged") == NOT_AUTHORIZED
    assert a.publish(f"vi/v1/{VIN_A}/other", b"not a stream") == NOT_AUTHORIZED
    # One connection's messages reach a subscriber in order: once the marker arrived,
    # the forged ones had every chance to arrive before it.
    assert a.publish(f"vi/v1/{VIN_A}/signals", b"marker") == 0
    assert _wait_for(reader, f"vi/v1/{VIN_A}/signals") == [f"vi/v1/{VIN_A}/signals"]


def test_vehicle_cannot_read_vehicle_topics(clients, tls_port, pki):
    """mosquitto 2.0 grants a wildcard SUBSCRIBE and checks `read` per message: nothing arrives."""
    b = Client(tls_port, pki, VIN_B, "vehicle-b")
    try:
        b.subscribe("vi/v1/+/+")
        assert clients["a"].publish(f"vi/v1/{VIN_A}/signals", b"private") == 0
        assert _wait_for(clients["reader"], f"vi/v1/{VIN_A}/signals") == [f"vi/v1/{VIN_A}/signals"]
        time.sleep(0.5)  # the broker fans one message out to all subscribers in one pass
        assert b.received == []
    finally:
        b.close()


def test_gateway_identity_cannot_publish_to_vehicle_topics(clients, tls_port, pki):
    gw = Client(tls_port, pki, GATEWAY_CN, "gateway-writer")
    try:
        assert gw.publish(f"vi/v1/{VIN_A}/signals", b"forged by the gateway") == NOT_AUTHORIZED
    finally:
        gw.close()
    assert clients["a"].publish(f"vi/v1/{VIN_A}/events", b"marker") == 0
    assert _wait_for(clients["reader"], f"vi/v1/{VIN_A}/events") == [f"vi/v1/{VIN_A}/events"]


def _gets_connack(port: int, tls: tuple[str, str | None, str | None] | None) -> bool:
    """True when the broker accepts a connection (CONNACK success) within 5 s."""
    accepted = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv5)
    c.on_connect = lambda _c, _u, _f, rc, _p: accepted.set() if not rc.is_failure else None
    if tls:
        c.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
    try:
        c.connect("localhost", port, keepalive=5)
    except (ssl.SSLError, OSError):
        return False  # the TLS handshake itself failed
    c.loop_start()
    try:
        return accepted.wait(3)  # a refused handshake never answers; 3 s is ample on loopback
    finally:
        c.disconnect()
        c.loop_stop()


def test_client_without_certificate_cannot_connect(tls_port, pki):
    ca = str(pki / "ca.crt")
    assert _gets_connack(tls_port, (ca, str(pki / f"{VIN_A}.crt"), str(pki / f"{VIN_A}.key"))), "control"
    assert not _gets_connack(tls_port, (ca, None, None)), "TLS without a client certificate"
    assert not _gets_connack(tls_port, None), "plain MQTT on the TLS listener"


def test_client_with_a_certificate_of_another_ca_cannot_connect(tls_port, pki, tmp_path):
    rogue = tmp_path / "rogue"
    subprocess.run(["sh", str(DEPLOY / "gen-certs.sh"), str(rogue), "localhost", VIN_A], check=True)
    # Trusts the real broker, presents a certificate with the right CN from a CA the broker does not know.
    assert not _gets_connack(tls_port, (str(pki / "ca.crt"), str(rogue / f"{VIN_A}.crt"), str(rogue / f"{VIN_A}.key")))


def test_gateway_over_tls_stores_what_a_vehicle_publishes(clients, tls_port, pki, rig):
    gw = rig.gateway(
        f"mqtts://localhost:{tls_port}",
        "--mqtt-tls-ca",
        str(pki / "ca.crt"),
        "--mqtt-tls-cert",
        str(pki / f"{GATEWAY_CN}.crt"),
        "--mqtt-tls-key",
        str(pki / f"{GATEWAY_CN}.key"),
        client_id="gateway-tls",
    )
    clients["a"].subscribe(f"vi/v1/{VIN_A}/receipt")
    message = speed_message(VIN_A, 42)
    assert clients["a"].publish(message.topic, message.payload) == 0
    forged = speed_message(VIN_B, 43)
    assert clients["a"].publish(forged.topic, forged.payload) == NOT_AUTHORIZED
    deadline = time.monotonic() + 30
    while gw.stats()["messages"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gw.sql("SELECT vin, seq, count() FROM signals GROUP BY vin, seq") == [[VIN_A, 42, 10]]
    # The vehicle hears it is stored, through the ACL that lets only the gateway write receipts.
    receipt = _wait_for(clients["a"], f"vi/v1/{VIN_A}/receipt")
    assert receipt == [f"vi/v1/{VIN_A}/receipt"]
    assert decode_receipt(clients["a"].received[0][1]) == Receipt(VIN_A, ((42, 42),), ())
    assert gw.stop() == 0


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({"mqtt_tls_ca": "CA"}, "mqtt_tls_ca", "not mqtts://"),
        ({"mqtt_url": "mqtts://h:8883", "mqtt_tls_cert": "CERT"}, "mqtt_tls_key", "needs both"),
        ({"mqtt_url": "mqtts://h:8883", "mqtt_tls_ca": "/nonexistent/ca.crt"}, "mqtt_tls_ca", "not a readable file"),
    ],
)
def test_tls_settings_are_checked(settings, key, problem, pki):
    values = {k: str(pki / "ca.crt") if v in ("CA", "CERT") else v for k, v in settings.items()}
    problems = GatewayConfig(**values).problems()
    assert [(e.key, problem in e.problem) for e in problems] == [(key, True)]


def test_gateway_identity_reads_through_a_shared_subscription(clients, tls_port, pki):
    shared = Client(tls_port, pki, GATEWAY_CN, "gateway-shared")
    try:
        shared.subscribe("$share/vehicle-ingest/vi/v1/+/events")
        assert clients["a"].publish(f"vi/v1/{VIN_A}/events", b"to the group") == 0
        assert _wait_for(shared, f"vi/v1/{VIN_A}/events") == [f"vi/v1/{VIN_A}/events"]
    finally:
        shared.close()
