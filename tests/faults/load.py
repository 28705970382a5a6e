"""A steady QoS 1 load whose truth is known per message: which (vin, seq) the broker acknowledged, and when.

The simulator's publisher counts totals; a fault scenario needs more: the
identity of every message the broker took responsibility for (its PUBACK
arrived), the samples and value sum each one carries, and the time of the
PUBACK, so that a loss can be attributed to the fault that caused it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.gateway.mqtt_source import parse_mqtt_url

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
class Load:
    """Publishes `rate` messages/s round-robin over `vehicles` VINs until stopped.

    `acked` maps (vin, seq) to what the store must hold for it. A message
    whose PUBACK never came (the broker died first) is not in `acked`: the
    broker never promised it, and paho re-sends it after reconnecting.
    """

    mqtt_url: str
    prefix: str = "FLT"
    vehicles: int = 20
    rate: float = 400.0
    samples_per_message: int = 10
    client_id: str = "vi-faults-load"
    acked: dict[tuple[str, int], Expected] = field(default_factory=dict)
    sent: int = 0
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _early: dict[int, ReasonCode] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _client: mqtt.Client | None = None

    def start(self) -> Load:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_publish = self._on_publish
        connected = threading.Event()
        client.on_connect = lambda *_a: connected.set()
        host, port, _ = parse_mqtt_url(self.mqtt_url)
        client.connect(host, port, keepalive=10)
        client.loop_start()
        if not connected.wait(10):
            raise ConnectionError(f"load: no CONNACK from {self.mqtt_url}")
        self._client = client
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._thread.start()
        return self

    def stop(self, settle_s: float = 60.0) -> None:
        """Stop publishing; wait for the PUBACKs of what was sent (re-sent after a broker restart if need be)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        deadline = time.monotonic() + settle_s
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self._client is not None
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

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

    def _send(self, vin: str, seq: int, base_ms: int) -> None:
        n = self.samples_per_message
        ts = base_ms + np.arange(n, dtype=np.int64) * 10
        raw = (np.arange(n, dtype=np.int64) * 7 + seq * 13 + int(vin[-3:], 36)) % 2500
        payload = encode_signals(vin, seq, base_ms, [SignalBlock(_SPEED.id, _SPEED.scale_exp, ts, raw)])
        value_sum = float((raw / 10 ** (-_SPEED.scale_exp)).sum())
        assert self._client is not None
        info = self._client.publish(f"vi/v1/{vin}/signals", payload, qos=1)
        pending = _Pending((vin, seq), n, value_sum)
        with self._lock:
            if info.mid in self._early:
                self._settle(pending, self._early.pop(info.mid))
            else:
                self._pending[info.mid] = pending

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._lock:
            pending = self._pending.pop(mid, None)
            if pending is None:
                self._early[mid] = rc  # the PUBACK raced ahead of _send registering the mid
            else:
                self._settle(pending, rc)

    def _settle(self, pending: _Pending, rc: ReasonCode) -> None:
        if not rc.is_failure:
            routed = rc.value != _NO_MATCHING_SUBSCRIBERS
            self.acked[pending.key] = Expected(pending.samples, pending.value_sum, time.time(), routed)
