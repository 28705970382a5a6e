"""A deterministic fleet: vehicles with daily trips, parked heartbeats and cockpit events.

Each vehicle produces whole arrays per trip (numpy, no per-sample Python) and
cuts them into wire messages with the library's own encoder, so the wire
format and the decoder cannot drift apart. The same seed gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.codec import SignalBlock, encode_events, encode_signals, quantize

__all__ = ["FleetSpec", "SimMessage", "make_vin", "simulate_fleet"]

DAY_MS = 86_400_000
_VIN_ALPHABET = np.frombuffer(b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789", dtype=np.uint8)
_LVSS = {"LOCK": 1, "OFF": 2, "ACC": 3, "ON": 4, "START": 5}  # index into VSS allowed list
_APPS = ("com.vendor.spotify", "com.vendor.weather", "com.vendor.podcasts", "com.vendor.parking")
_MEDIA_SOURCES = ("FM", "DAB", "BLUETOOTH", "INTERNET", "USB")


@dataclass(frozen=True, slots=True)
class FleetSpec:
    vehicles: int
    start_ms: int
    duration_s: float
    sample_hz: float = 1.0
    seed: int = 1
    message_s: float = 60.0  # simulated seconds of signals per message
    heartbeat_s: float = 6 * 3600.0  # parked status report interval


@dataclass(frozen=True, slots=True)
class SimMessage:
    sim_ts: int  # ms: when the head unit sends it (end of its window)
    topic: str
    payload: bytes
    samples: int
    events: int
    value_sum: float


def make_vin(rng: np.random.Generator) -> str:
    return "SMX" + bytes(rng.choice(_VIN_ALPHABET, 14)).decode("ascii")


@dataclass
class _Vehicle:
    vin: str
    electric: bool
    odometer_m: float
    energy_pct: float
    lat: float
    lon: float
    service_km: float
    service_s: float
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class _Signals:
    """Catalog ids and resolutions of the signals the simulator sends."""

    def __init__(self, catalog: SignalCatalog) -> None:
        def sig(path: str) -> tuple[int, int]:
            s = catalog.by_path(path)
            return s.id, s.scale_exp

        self.speed = sig("Vehicle.Speed")
        self.odometer = sig("Vehicle.TraveledDistance")
        self.ignition = sig("Vehicle.LowVoltageSystemState")
        self.accel = sig("Vehicle.Acceleration.Longitudinal")
        self.lat = sig("Vehicle.CurrentLocation.Latitude")
        self.lon = sig("Vehicle.CurrentLocation.Longitude")
        self.fuel = sig("Vehicle.Powertrain.FuelSystem.RelativeLevel")
        self.soc = sig("Vehicle.Powertrain.TractionBattery.StateOfCharge.Current")
        self.seat = sig("Vehicle.Cabin.Seat.Row1.DriverSide.HeatingCooling")
        self.service_km = sig("Vehicle.Service.DistanceToService")
        self.service_s = sig("Vehicle.Service.TimeToService")
        self.battery_v = sig("Vehicle.LowVoltageBattery.CurrentVoltage")
        self.tyre = sig("Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure")


class _Events:
    def __init__(self, catalog: EventCatalog) -> None:
        def ev(name: str) -> int:
            return catalog.by_name(name).id

        self.nav_start, self.nav_end = ev("navigation_started"), ev("navigation_ended")
        self.media = ev("media_source_changed")
        self.voice_start, self.voice_end = ev("voice_session_started"), ev("voice_session_ended")
        self.app_launch, self.app_close = ev("app_launched"), ev("app_closed")


def _block(sig: tuple[int, int], ts: np.ndarray, values: np.ndarray) -> tuple[SignalBlock, float]:
    raw = quantize(np.asarray(values, dtype=np.float64), sig[1])
    scaled = raw * 10.0 ** sig[1] if sig[1] >= 0 else raw / 10.0 ** (-sig[1])
    return SignalBlock(sig[0], sig[1], ts.astype(np.int64), raw), float(scaled.sum())


def _trip_starts(rng: np.random.Generator, spec: FleetSpec) -> np.ndarray:
    """Trip start times: weekday commutes plus random errands, in ms."""
    days = int(np.ceil(spec.duration_s / 86_400)) + 1
    first_day = spec.start_ms - spec.start_ms % DAY_MS
    starts = []
    for d in range(days):
        day = first_day + d * DAY_MS
        if (day // DAY_MS + 4) % 7 < 5:  # Mon-Fri (1970-01-01 was a Thursday)
            starts += [day + int(rng.normal(7.8, 0.3) * 3_600_000), day + int(rng.normal(17.5, 0.5) * 3_600_000)]
        for _ in range(rng.poisson(0.8)):
            starts.append(day + int(rng.uniform(9, 21) * 3_600_000))
    out = np.sort(np.array(starts, dtype=np.int64))
    end = spec.start_ms + int(spec.duration_s * 1000)
    return out[(out >= spec.start_ms) & (out < end - 3_600_000)]


def _speed_profile(rng: np.random.Generator, n: int, dt_s: float) -> np.ndarray:
    """Smoothed random cruising speeds (km/h) that start and end at rest."""
    knots = rng.uniform(20, 110, max(2, n // max(1, int(120 / dt_s)) + 2))
    target = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) * dt_s / 30.0)
    speed = np.clip(target * ramp + rng.normal(0, 1.5, n) * ramp, 0, 180)
    speed[[0, -1]] = 0.0
    return speed


class _VehicleSim:
    def __init__(self, v: _Vehicle, spec: FleetSpec, sigs: _Signals, evs: _Events, rng: np.random.Generator) -> None:
        self.v, self.spec, self.sigs, self.evs, self.rng = v, spec, sigs, evs, rng
        self.topic_signals = f"vi/v1/{v.vin}/signals"
        self.topic_events = f"vi/v1/{v.vin}/events"

    def messages(self) -> Iterator[SimMessage]:
        trips = _trip_starts(self.rng, self.spec)
        heartbeat = self.spec.start_ms
        end_ms = self.spec.start_ms + int(self.spec.duration_s * 1000)
        last_end = self.spec.start_ms
        for start in trips:
            if start < last_end:
                continue
            while heartbeat < start:
                yield self._heartbeat(heartbeat)
                heartbeat += int(self.spec.heartbeat_s * 1000)
            trip_messages, last_end = self._trip(int(start))
            yield from trip_messages
            heartbeat = max(heartbeat, last_end + 60_000)
        while heartbeat < end_ms:
            yield self._heartbeat(heartbeat)
            heartbeat += int(self.spec.heartbeat_s * 1000)

    def _heartbeat(self, ts: int) -> SimMessage:
        v, s = self.v, self.sigs
        t = np.array([ts], dtype=np.int64)
        energy = s.soc if v.electric else s.fuel
        parts = [
            _block(s.ignition, t, [_LVSS["LOCK"]]),
            _block(energy, t, [v.energy_pct]),
            _block(s.battery_v, t, [self.rng.normal(12.5, 0.1)]),
            _block(s.service_km, t, [v.service_km]),
            _block(s.service_s, t, [v.service_s - (ts - self.spec.start_ms) / 1000]),
            _block(s.tyre, t, [self.rng.normal(240, 3)]),
        ]
        return self._signal_message(ts, parts)

    def _signal_message(self, sent_at: int, parts: list[tuple[SignalBlock, float]]) -> SimMessage:
        blocks = [b for b, _ in parts]
        payload = encode_signals(self.v.vin, self.v.next_seq(), int(blocks[0].ts_ms[0]), blocks)
        samples = sum(len(b.raw) for b in blocks)
        return SimMessage(sent_at, self.topic_signals, payload, samples, 0, sum(x for _, x in parts))

    def _trip(self, start: int) -> tuple[list[SimMessage], int]:
        rng, spec, v = self.rng, self.spec, self.v
        dt_ms = max(1, round(1000 / spec.sample_hz))
        n = max(3, int(rng.uniform(10, 50) * 60_000 // dt_ms))
        ts = start + np.arange(n, dtype=np.int64) * dt_ms
        speed = _speed_profile(rng, n, dt_ms / 1000)
        step_m = np.concatenate([[0.0], (speed[1:] + speed[:-1]) / 2 / 3.6 * dt_ms / 1000])
        odo = v.odometer_m + np.cumsum(step_m)
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.05, n))
        lat = v.lat + np.cumsum(step_m * np.cos(heading)) / 111_000
        lon = v.lon + np.cumsum(step_m * np.sin(heading)) / (111_000 * np.cos(np.radians(v.lat)))
        use_per_m = (0.018 if v.electric else 0.012) / 1000
        energy = np.maximum(5.0, v.energy_pct - np.cumsum(step_m) * use_per_m * 100 / 100)
        accel = np.gradient(speed / 3.6, dt_ms / 1000)
        columns = {
            self.sigs.speed: speed,
            self.sigs.odometer: np.floor(odo),
            self.sigs.lat: lat,
            self.sigs.lon: lon,
            self.sigs.accel: np.clip(accel, -9, 9),
            (self.sigs.soc if v.electric else self.sigs.fuel): energy,
        }
        messages = self._cut(ts, columns)
        messages.extend(self._trip_events(start, int(ts[-1])))
        v.odometer_m, v.lat, v.lon = float(np.floor(odo[-1])), float(lat[-1]), float(lon[-1])
        v.energy_pct = float(energy[-1]) if energy[-1] > 20 else 95.0  # refuel / recharge when low
        v.service_km -= float(odo[-1] - odo[0]) / 1000
        return sorted(messages, key=lambda m: m.sim_ts), int(ts[-1])

    def _cut(self, ts: np.ndarray, columns: dict[tuple[int, int], np.ndarray]) -> list[SimMessage]:
        per_msg = max(1, int(self.spec.message_s * 1000 // max(1, int(ts[1] - ts[0]))))
        out = []
        for lo in range(0, len(ts), per_msg):
            hi = min(len(ts), lo + per_msg)
            t = ts[lo:hi]
            parts = [_block(sig, t, col[lo:hi]) for sig, col in columns.items()]
            if lo == 0:
                parts.insert(0, _block(self.sigs.ignition, t[:1], [_LVSS["ON"]]))
                if self.rng.random() < 0.3:
                    parts.append(_block(self.sigs.seat, t[:1], [self.rng.choice([33, 66, 100])]))
            if hi == len(ts):
                parts.append(_block(self.sigs.ignition, t[-1:], [_LVSS["OFF"]]))
            out.append(self._signal_message(int(t[-1]), parts))
        return out

    def _trip_events(self, start: int, end: int) -> list[SimMessage]:
        rng, e = self.rng, self.evs
        ids, ts, values, texts = [], [], [], []

        def add(event_id: int, at: int, value: int = 0, text: str = "") -> None:
            ids.append(event_id)
            ts.append(at)
            values.append(value)
            texts.append(text)

        if rng.random() < 0.4:
            add(e.nav_start, start + 5_000, int(rng.uniform(2_000, 40_000)), "work")
            add(e.nav_end, end - 5_000, int(rng.uniform(2_000, 40_000)))
        if rng.random() < 0.6:
            add(e.media, start + 20_000, 0, str(rng.choice(_MEDIA_SOURCES)))
        if rng.random() < 0.2:
            at = int(rng.uniform(start, end - 60_000))
            add(e.voice_start, at)
            add(e.voice_end, at + 8_000, 8_000, "navigation")
        if rng.random() < 0.15:
            at = int(rng.uniform(start, end - 120_000))
            app = str(rng.choice(_APPS))
            add(e.app_launch, at, 0, app)
            add(e.app_close, at + 90_000, 90_000, app)
        if not ids:
            return []
        order = np.argsort(np.array(ts), kind="stable")
        payload = encode_events(
            self.v.vin,
            self.v.next_seq(),
            int(min(ts)),
            np.array(ids, dtype=np.uint16)[order],
            np.array(ts, dtype=np.int64)[order],
            np.array(values, dtype=np.int64)[order],
            [texts[i] for i in order],
        )
        return [SimMessage(end, self.topic_events, payload, 0, len(ids), 0.0)]


def _new_vehicle(rng: np.random.Generator) -> _Vehicle:
    return _Vehicle(
        vin=make_vin(rng),
        electric=bool(rng.random() < 0.35),
        odometer_m=float(rng.integers(1_000_000, 150_000_000)),
        energy_pct=float(rng.uniform(40, 95)),
        lat=float(rng.uniform(48.0, 52.0)),
        lon=float(rng.uniform(8.0, 13.0)),
        service_km=float(rng.uniform(-500, 30_000)),
        service_s=float(rng.uniform(-5, 365) * 86_400),
    )


def simulate_fleet(spec: FleetSpec, signals: SignalCatalog, events: EventCatalog) -> list[SimMessage]:
    """Every message the fleet sends over the window, ordered by send time (then vehicle)."""
    root = np.random.default_rng(spec.seed)
    sigs, evs = _Signals(signals), _Events(events)
    messages: list[SimMessage] = []
    for child in root.spawn(spec.vehicles):
        vehicle = _new_vehicle(child)
        messages.extend(_VehicleSim(vehicle, spec, sigs, evs, child).messages())
    messages.sort(key=lambda m: m.sim_ts)
    return messages
