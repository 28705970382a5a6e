"""A steady QoS 1 load of receipt-aware head units whose truth is known per message.

The simulator's publisher counts totals; a fault scenario needs more: the identity of every
message sent, the samples and value sum each one carries, and the time of its PUBACK.

Like a head unit that follows the wire format (schemas/WIRE_FORMAT.md section 13), the load keeps
every message until a gateway receipt covers it, and resends what is not covered after a reconnect
and after `receipt_timeout_s`. Its truth is then every message it sent (`truth`), and what is
still not receipted at the end is lost as the head unit counts it. Without receipts the truth is
what the broker PUBACKed (`acked`), and a broker crash can lose part of it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.mqtt_url import parse_mqtt_url
from vehicle_ingest.receipts import ReceiptError, decode_receipt

__all__ = ["Expected", "Load", "fault_vin"]

_SPEED = load_signal_catalog().by_path("Vehicle.Speed")
_NO_MATCHING_SUBSCRIBERS = 0x10  # a success PUBACK: accepted, and delivered to no one
_VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O, Q


def fault_vin(prefix: str, i: int) -> str:
    """A valid 17-character VIN unique per (prefix, i)."""
    if not prefix or any(ch not in _VIN_ALPHABET for ch in prefix.upper()):
        raise ValueError(f"VIN prefix {prefix!r} must be letters/digits without I, O, Q")
    digits = ""
    n = i
    for _ in range(6):
        n, r = divmod(n, len(_VIN_ALPHABET))
        digits = _VIN_ALPHABET[r] + digits
    return (prefix.upper() + "X" * 11)[:11] + digits


@dataclass(frozen=True, slots=True)
class Expected:
    """What one message must become in the store: `samples` rows whose values sum to `value_sum`."""

    samples: int
    value_sum: float
    acked_at: float  # time.time() of the PUBACK: wall clock, to compare with the broker's log
    routed: bool = True  # False: the PUBACK said "no matching subscribers", the broker kept it for no one


@dataclass
class _Pending:
    key: tuple[str, int]
    samples: int
    value_sum: float


@dataclass
class _Kept:
    """A message in the head unit's buffer: kept until a receipt covers it."""

    topic: str
    payload: bytes
    sent_at: float
    attempts: int = 1

    def due(self, now: float, timeout_s: float) -> bool:
        """Resent after timeout_s, then 2x, 4x ... (at most 8x): a gateway that is down is not flooded."""
        return now - self.sent_at >= timeout_s * 2 ** min(self.attempts - 1, 3)


@dataclass
class Load:
    """Publishes `rate` messages/s round-robin over `vehicles` VINs until stopped.

    `truth` maps (vin, seq) to what the store must hold for it. With receipts, that is every
    message sent; without, every message whose PUBACK arrived (`acked`). `offline()` takes the
    head units off the broker: they keep producing into their buffers and upload the backlog when
    `online()` brings them back.
    """

    mqtt_url: str
    prefix: str = "FLT"
    vehicles: int = 20
    rate: float = 400.0
    samples_per_message: int = 10
    client_id: str = "vi-faults-load"
    receipts: bool = True
    receipt_timeout_s: float = 60.0  # the spec's recommendation (schemas/WIRE_FORMAT.md section 13)
    acked: dict[tuple[str, int], Expected] = field(default_factory=dict)
    sent_truth: dict[tuple[str, int], Expected] = field(default_factory=dict)
    sent: int = 0
    resent: int = 0
    receipted: int = 0
    _kept: dict[str, dict[int, _Kept]] = field(default_factory=dict)  # by VIN, then seq
    _resent_mids: set[int] = field(default_factory=set)
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _early: dict[int, ReasonCode] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _online: threading.Event = field(default_factory=threading.Event)
    _reconnected: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _client: mqtt.Client | None = None
    _connections: int = 0

    def start(self) -> Load:
        self._online.set()
        self._client = self._connect()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._thread.start()
        return self

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_publish = self._on_publish
        client.on_message = self._on_receipt
        connected = threading.Event()

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
            if rc.is_failure:
                return
            self._connections += 1
            if self.receipts:  # every time: a broker that lost our session lost the subscription with it
                c.subscribe("vi/v1/+/receipt", qos=1)
            if self._connections > 1:
                self._reconnected.set()
            connected.set()

        client.on_connect = on_connect
        host, port, _ = parse_mqtt_url(self.mqtt_url)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # receipts published while we are away wait for us
        client.connect(host, port, keepalive=10, clean_start=False, properties=props)
        client.loop_start()
        if not connected.wait(10):
            raise ConnectionError(f"load: no CONNACK from {self.mqtt_url}")
        return client

    def offline(self) -> None:
        """The head units lose the broker: they keep producing, into their buffers only."""
        self._online.clear()
        assert self._client is not None
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:  # that connection's PUBACKs will never come; the messages stay kept until receipted
            self._pending.clear()
            self._resent_mids.clear()

    def online(self) -> None:
        """Back on the broker: every message not yet receipted goes out (the backlog)."""
        self._client = self._connect()
        self._online.set()
        self._reconnected.set()

    def stop(self, settle_s: float = 60.0) -> None:
        """Stop producing; wait for the PUBACKs (and with receipts, the receipts) of what was sent."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        deadline = time.monotonic() + settle_s
        # With receipts the head units wait for receipts only; a PUBACK settles nothing for them.
        while (self.unreceipted if self.receipts else self.in_flight) and time.monotonic() < deadline:
            self._resend_due()
            time.sleep(0.05)
        assert self._client is not None
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def truth(self) -> dict[tuple[str, int], Expected]:
        return self.sent_truth if self.receipts else self.acked

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def unreceipted(self) -> int:
        """Messages the head units still keep: not covered by a receipt (lost, if still so at the end)."""
        with self._lock:
            return sum(len(by_seq) for by_seq in self._kept.values())

    def _run(self) -> None:
        seq = 0
        started = time.monotonic()
        base_ms = time.time_ns() // 1_000_000 - 3_600_000
        while not self._stop.is_set():
            due = started + self.sent / self.rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            vehicle = self.sent % self.vehicles
            if vehicle == 0:
                seq += 1
            self._send(fault_vin(self.prefix, vehicle), seq, base_ms + seq * 1000)
            self.sent += 1
            self._resend_due()

    def _send(self, vin: str, seq: int, base_ms: int) -> None:
        n = self.samples_per_message
        ts = base_ms + np.arange(n, dtype=np.int64) * 10
        raw = (np.arange(n, dtype=np.int64) * 7 + seq * 13 + int(vin[-3:], 36)) % 2500
        payload = encode_signals(vin, seq, base_ms, [SignalBlock(_SPEED.id, _SPEED.scale_exp, ts, raw)])
        value_sum = float((raw / 10 ** (-_SPEED.scale_exp)).sum())
        self.sent_truth[(vin, seq)] = Expected(n, value_sum, 0.0)
        if self.receipts:
            with self._lock:
                self._kept.setdefault(vin, {})[seq] = _Kept(f"vi/v1/{vin}/signals", payload, time.monotonic())
        if self._online.is_set():
            self._publish(f"vi/v1/{vin}/signals", payload, _Pending((vin, seq), n, value_sum))

    def _publish(self, topic: str, payload: bytes, pending: _Pending | None) -> None:
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=1)
        with self._lock:
            if pending is None:  # a resend: its PUBACK settles nothing (the first copy's did, or a receipt will)
                if self._early.pop(info.mid, None) is None:
                    self._resent_mids.add(info.mid)
            elif info.mid in self._early:
                self._settle(pending, self._early.pop(info.mid))
            else:
                self._pending[info.mid] = pending

    def _resend_due(self) -> None:
        """After a reconnect, everything kept; else what waited `receipt_timeout_s` without a receipt."""
        if not (self.receipts and self._online.is_set()):
            return
        everything = self._reconnected.is_set()
        self._reconnected.clear()
        now = time.monotonic()
        with self._lock:
            kept = [k for by_seq in self._kept.values() for k in by_seq.values()]
            due = [k for k in kept if everything or k.due(now, self.receipt_timeout_s)]
            for k in due:
                k.sent_at, k.attempts = now, k.attempts + 1
        for kept in due:
            self._publish(kept.topic, kept.payload, None)
        self.resent += len(due)

    def _on_receipt(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            receipt = decode_receipt(msg.payload)
        except ReceiptError:
            return
        rejected = {s for s, _ in receipt.rejected}
        with self._lock:
            by_seq = self._kept.get(receipt.vin, {})
            for seq in [s for s in by_seq if s in rejected or any(a <= s <= b for a, b in receipt.stored)]:
                del by_seq[seq]
                self.receipted += 1

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._lock:
            if mid in self._resent_mids:
                self._resent_mids.discard(mid)
                return
            pending = self._pending.pop(mid, None)
            if pending is None:
                self._early[mid] = rc  # the PUBACK raced ahead of _send (or a resend) registering the mid
            else:
                self._settle(pending, rc)

    def _settle(self, pending: _Pending, rc: ReasonCode) -> None:
        if not rc.is_failure:
            routed = rc.value != _NO_MATCHING_SUBSCRIBERS
            self.acked[pending.key] = Expected(pending.samples, pending.value_sum, time.time(), routed)
