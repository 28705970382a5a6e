"""The load generator's fleet: its spec, the pool of encoded bodies, and the result it reports.

Apart from `load` so that both ways of publishing (`load` over a few connections,
`many_connections` with one per vehicle) build on it without importing each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgpack
import numpy as np

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.codec import Kind, SignalBlock, encode_events, encode_signals, quantize
from vehicle_ingest.simulators.fleet import SimMessage, make_vin
from vehicle_ingest.simulators.publisher import PublishTotals

__all__ = ["MAX_SIGNALS", "BodyPool", "LoadFleet", "LoadResult", "LoadSpec"]

# (signal path, start, step stddev per sample) of a moving car; the first `signals` are used.
_CHANNELS: tuple[tuple[str, float, float], ...] = (
    ("Vehicle.Speed", 60.0, 1.5),
    ("Vehicle.Acceleration.Longitudinal", 0.0, 0.3),
    ("Vehicle.Acceleration.Lateral", 0.0, 0.3),
    ("Vehicle.CurrentLocation.Latitude", 48.1, 0.00002),
    ("Vehicle.CurrentLocation.Longitude", 11.5, 0.00002),
    ("Vehicle.CurrentLocation.Heading", 180.0, 2.0),
    ("Vehicle.Powertrain.CombustionEngine.Speed", 2000.0, 40.0),
    ("Vehicle.TraveledDistance", 48_211_000.0, 0.0),
    ("Vehicle.Powertrain.FuelSystem.RelativeLevel", 55.0, 0.0),
    ("Vehicle.LowVoltageBattery.CurrentVoltage", 14.1, 0.02),
    ("Vehicle.Powertrain.ElectricMotor.Speed", 3000.0, 50.0),
    ("Vehicle.Exterior.LightIntensity", 40.0, 0.5),
)
MAX_SIGNALS = len(_CHANNELS)
_EVENTS = (("voice_session_started", "voice_session_ended"), ("navigation_started", "navigation_ended"))


@dataclass(frozen=True, slots=True)
class LoadSpec:
    vehicles: int = 10_000
    rate: float = 2_000.0  # signal messages per second, whole fleet
    hz: float = 10.0  # samples per second per signal
    signals: int = 10  # signals per message
    duration_s: float = 60.0
    connections: int = 4  # vehicles multiplexed over this many MQTT connections
    per_vehicle: bool = False  # one MQTT connection per vehicle instead
    events_per_hour: float = 6.0  # cockpit events per vehicle per hour
    pool: int = 256  # distinct encoded bodies
    inflight: int = 1000  # unacked publishes per connection
    seed: int = 7
    vin_prefix: str = "LDX"
    receipts: bool = False  # count what gateway receipts settle and resend what they do not cover, as head units do
    receipt_timeout_s: float = 30.0
    settle_timeout_s: float = 60.0  # after the last publish, wait this long for receipts

    @property
    def period_s(self) -> float:
        return self.vehicles / self.rate

    @property
    def samples_per_signal(self) -> int:
        return max(1, round(self.hz * self.period_s))

    @property
    def samples_per_message(self) -> int:
        return self.samples_per_signal * self.signals

    def check(self) -> None:
        if not 1 <= self.signals <= MAX_SIGNALS:
            raise ValueError(f"signals: must be 1..{MAX_SIGNALS}, got {self.signals}")
        for name in ("vehicles", "rate", "hz", "duration_s", "connections", "pool", "inflight"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class _Body:
    packed: bytes  # the msgpack body element, relative to base_ts
    last_offset_ms: int  # newest sample relative to base_ts
    samples: int
    value_sum: float


class BodyPool:
    """`size` signal bodies of random-walk samples, encoded once."""

    def __init__(self, spec: LoadSpec, catalog: SignalCatalog) -> None:
        rng = np.random.default_rng(spec.seed)
        n = spec.samples_per_signal
        offsets = np.round(np.arange(n) * 1000.0 / spec.hz).astype(np.int64)
        self.bodies = [self._body(catalog, spec.signals, offsets, rng) for _ in range(spec.pool)]

    @staticmethod
    def _body(catalog: SignalCatalog, signals: int, offsets: np.ndarray, rng: np.random.Generator) -> _Body:
        blocks, total = [], 0.0
        for path, start, step in _CHANNELS[:signals]:
            sig = catalog.by_path(path)
            walk = start * (1 + 0.2 * rng.standard_normal()) + np.cumsum(rng.normal(0, step, len(offsets)))
            raw = quantize(np.clip(walk, sig.min, sig.max), sig.scale_exp)
            blocks.append(SignalBlock(sig.id, sig.scale_exp, offsets, raw))
            total += float((raw * 10.0**sig.scale_exp).sum())
        payload = encode_signals("A" * 17, 0, 0, blocks)
        prefix = len(_header_prefix(Kind.SIGNALS, "A" * 17, 0, 0))
        return _Body(payload[prefix:], int(offsets[-1]), len(offsets) * signals, total)


def _header_prefix(kind: Kind, vin: str, seq: int, base_ts: int) -> bytes:
    """fixarray(6), version, kind, vin, seq, base_ts: everything before the body."""
    prefix: bytes = (
        b"\x96\x01" + msgpack.packb(int(kind)) + msgpack.packb(vin) + msgpack.packb(seq) + msgpack.packb(base_ts)
    )
    return prefix


class LoadFleet:
    """Who sends next, with which seq; produces ready-to-publish messages."""

    def __init__(self, spec: LoadSpec, signals: SignalCatalog, events: EventCatalog) -> None:
        rng = np.random.default_rng(spec.seed + 1)
        self.spec = spec
        self.vins = [spec.vin_prefix + make_vin(rng)[len(spec.vin_prefix) :] for _ in range(spec.vehicles)]
        self.pool = BodyPool(spec, signals).bodies
        # Seqs start at the run's start time so runs against the same store never collide.
        self.next_seq = np.full(spec.vehicles, int(time.time() * 1000), dtype=np.int64)
        self.events = events
        self.rng = rng

    def _seq(self, vehicle: int) -> int:
        seq = int(self.next_seq[vehicle])
        self.next_seq[vehicle] = seq + 1
        return seq

    def signal_message(self, vehicle: int, counter: int) -> SimMessage:
        body = self.pool[(vehicle * 7 + counter) % len(self.pool)]
        now = int(time.time() * 1000)
        vin = self.vins[vehicle]
        payload = _header_prefix(Kind.SIGNALS, vin, self._seq(vehicle), now - body.last_offset_ms) + body.packed
        return SimMessage(now, f"vi/v1/{vin}/signals", payload, body.samples, 0, body.value_sum)

    def event_message_for(self, vehicle: int) -> SimMessage:
        """A finished cockpit session (start and end event) of `vehicle`."""
        start, end = _EVENTS[int(self.rng.integers(len(_EVENTS)))]
        now = int(time.time() * 1000)
        ids = [self.events.by_name(start).id, self.events.by_name(end).id]
        vin = self.vins[vehicle]
        payload = encode_events(vin, self._seq(vehicle), now - 60_000, ids, [now - 60_000, now], [0, 0], ["", ""])
        return SimMessage(now, f"vi/v1/{vin}/events", payload, 0, 2, 0.0)


@dataclass(slots=True)
class LoadResult:
    totals: PublishTotals
    offered: int  # messages handed to the client library
    target_rate: float
    samples_per_message: int
    connections: int

    def as_dict(self) -> dict[str, float | int]:
        t = self.totals
        seconds = max(t.seconds, 1e-9)
        return {
            **t.as_dict(),
            "offered": self.offered,
            "target_msgs_per_s": self.target_rate,
            "acked_msgs_per_s": round(t.messages / seconds, 1),
            "acked_samples_per_s": round(t.samples / seconds, 1),
            "samples_per_message": self.samples_per_message,
            "connections": self.connections,
        }
