"""A deterministic fleet: owners with personas, vehicles with trips, heartbeats and cockpit use.

Each vehicle produces whole arrays per trip (numpy, no per-sample Python) and
cuts them into wire messages with the library's own encoder, so the wire
format and the decoder cannot drift apart. While it sends, it records what it
sent (`VehicleTruth`): trips, cockpit use days, latest maintenance values.
The same seed gives the same bytes and the same truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.codec import SignalBlock, encode_events, encode_signals, quantize
from vehicle_ingest.owners import Ownership
from vehicle_ingest.simulators.personas import Persona, assign_persona

__all__ = [
    "DAY_MS",
    "MAINTENANCE_PATHS",
    "Effect",
    "Fleet",
    "FleetSpec",
    "SimMessage",
    "TripTruth",
    "VehicleTruth",
    "make_vin",
    "simulate_fleet",
    "simulate_vehicle",
]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_VIN_ALPHABET = np.frombuffer(b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789", dtype=np.uint8)
_LVSS = {"LOCK": 1, "OFF": 2, "ON": 4}  # index into the VSS allowed list
_APPS = ("com.vendor.spotify", "com.vendor.weather", "com.vendor.podcasts", "com.vendor.parking")
_MEDIA_SOURCES = ("FM", "DAB", "BLUETOOTH", "INTERNET", "USB")
_TYRES = (
    "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure",
    "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure",
    "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.Pressure",
    "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.Pressure",
)
# Signals whose every value the truth keeps (`VehicleTruth.history`): tags on them can be evaluated as of any instant.
MAINTENANCE_PATHS = frozenset(
    {
        *_TYRES,
        "Vehicle.Service.DistanceToService",
        "Vehicle.Service.TimeToService",
        "Vehicle.LowVoltageBattery.CurrentVoltage",
    }
)
_STATE_SIGNALS = {
    "seat_heating": "Vehicle.Cabin.Seat.Row1.DriverSide.HeatingCooling",
    "climate": "Vehicle.Cabin.HVAC.IsAirConditioningActive",
    "cruise_control": "Vehicle.ADAS.CruiseControl.IsActive",
    "lane_keeping": "Vehicle.ADAS.LaneDepartureDetection.IsEnabled",
}
_Series = tuple[int, int, np.ndarray, np.ndarray]  # (signal id, scale_exp, ts, raw) of one signal


@dataclass(frozen=True, slots=True)
class FleetSpec:
    vehicles: int
    start_ms: int
    duration_s: float
    sample_hz: float = 1.0
    seed: int = 1
    message_s: float = 60.0  # simulated seconds of signals per message
    heartbeat_s: float = 6 * 3600.0  # parked status report interval

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.duration_s * 1000)


@dataclass(frozen=True, slots=True)
class SimMessage:
    sim_ts: int  # ms: when the head unit sends it
    topic: str
    payload: bytes
    samples: int
    events: int
    value_sum: float


@dataclass(frozen=True, slots=True)
class TripTruth:
    start_ms: int
    end_ms: int
    km: float  # odometer delta, as sent
    speed_km: float  # integrated speed, as sent
    night_km: float
    offset_min: int  # local solar offset from the first longitude sent


@dataclass(frozen=True, slots=True)
class Effect:
    """A change of behaviour from `from_ms` to `until_ms` (a campaign's, or the world's; simulators/campaigns.py).

    - "voice": each trip also starts a voice session with `probability`, drawn from the effect's own random
      stream (`seed`), never the vehicle's: the vehicle's trips and everything else it sends stay the same
      whether or not the effect applies, so a counterfactual run differs by the effect alone.
    - "service": the vehicle is serviced at `from_ms` (distance and time to service reset).
    """

    kind: str  # "voice" | "service"
    from_ms: int
    until_ms: int = 2**62
    probability: float = 0.0
    seed: int = 0


@dataclass
class VehicleTruth:
    vin: str
    persona: Persona
    trips: list[TripTruth] = field(default_factory=list)
    use_days: dict[str, set[int]] = field(default_factory=dict)  # feature -> UTC day numbers with a session start
    charging: dict[tuple[int, str], int] = field(default_factory=dict)  # (day, ac|dc) -> sessions
    latest: dict[str, tuple[int, float]] = field(default_factory=dict)  # signal path -> (ts, value sent)
    # What moments watch, as sent: (seq, is_event, signal or event id, ts, values); the truth's moments come from it.
    watched: list[tuple[int, bool, int, np.ndarray, np.ndarray]] = field(default_factory=list)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # MAINTENANCE_PATHS: every (ts, value)

    def used(self, feature: str, ts: int) -> None:
        self.use_days.setdefault(feature, set()).add(ts // DAY_MS)


@dataclass
class Fleet:
    spec: FleetSpec
    messages: list[SimMessage]
    vehicles: list[VehicleTruth]
    ownership: list[Ownership]


def make_vin(rng: np.random.Generator) -> str:
    return "SMX" + bytes(rng.choice(_VIN_ALPHABET, 14)).decode("ascii")


def _scaled(raw: np.ndarray, exp: int) -> np.ndarray:
    return raw * 10.0**exp if exp >= 0 else raw / 10.0 ** (-exp)


@dataclass
class _State:
    odometer_m: float
    energy_pct: float
    lat: float
    lon: float
    service_km: float
    service_s_at_start: float
    seq: int = 0


class _VehicleSim:
    def __init__(
        self,
        vin: str,
        persona: Persona,
        spec: FleetSpec,
        signals: SignalCatalog,
        events: EventCatalog,
        rng: np.random.Generator,
        watch: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset()),
        effects: Sequence[Effect] = (),
    ) -> None:
        self.vin, self.p, self.spec, self.rng = vin, persona, spec, rng
        self.watch = watch  # (signal ids, event ids) the moments watch
        self.services = sorted((e for e in effects if e.kind == "service"), key=lambda e: e.from_ms)
        self.voice = [(e, np.random.default_rng(e.seed)) for e in effects if e.kind == "voice"]
        self.sig = {s.path: (s.id, s.scale_exp) for s in signals.signals}
        self.ev = {e.name: e.id for e in events.events}
        self.truth = VehicleTruth(vin, persona)
        self.s = _State(
            float(rng.integers(1_000_000, 150_000_000)),
            float(rng.uniform(50, 95)),
            float(rng.uniform(48.0, 52.0)),
            float(rng.uniform(8.0, 13.0)),
            persona.service_km,
            persona.service_days * 86_400,
        )
        self.out: list[SimMessage] = []

    # -- encoding ------------------------------------------------------------

    def _series(self, path: str, ts: np.ndarray, values: npt.ArrayLike) -> _Series:
        sid, exp = self.sig[path]
        raw = quantize(np.asarray(values, dtype=np.float64), exp)
        order = np.argsort(ts, kind="stable")
        ts, raw = np.asarray(ts, dtype=np.int64)[order], raw[order]
        self.truth.latest[path] = (int(ts[-1]), float(_scaled(raw[-1:], exp)[0]))
        if path in MAINTENANCE_PATHS:
            values = _scaled(raw, exp)
            self.truth.history.setdefault(path, []).extend(zip(ts.tolist(), values.tolist(), strict=True))
        return sid, exp, ts, raw

    def _send_signals(self, sent_at: int, series: list[tuple[int, int, np.ndarray, np.ndarray]]) -> None:
        blocks = [SignalBlock(sid, exp, ts, raw) for sid, exp, ts, raw in series if len(ts)]
        self.s.seq += 1
        for b in blocks:
            if b.signal_id in self.watch[0]:
                self.truth.watched.append((self.s.seq, False, b.signal_id, b.ts_ms, _scaled(b.raw, b.scale_exp)))
        base = min(int(b.ts_ms[0]) for b in blocks)
        payload = encode_signals(self.vin, self.s.seq, base, blocks)
        samples = sum(len(b.raw) for b in blocks)
        value_sum = float(sum(_scaled(b.raw, b.scale_exp).sum() for b in blocks))
        self.out.append(SimMessage(sent_at, f"vi/v1/{self.vin}/signals", payload, samples, 0, value_sum))

    def _send_events(self, sent_at: int, items: list[tuple[int, str, int, str]]) -> None:
        if not items:
            return
        items.sort(key=lambda x: x[0])
        ts = np.array([x[0] for x in items], dtype=np.int64)
        ids = np.array([self.ev[x[1]] for x in items], dtype=np.uint16)
        values = np.array([x[2] for x in items], dtype=np.int64)
        self.s.seq += 1
        for event_id in self.watch[1] & set(ids.tolist()):
            at = ts[ids == event_id]
            self.truth.watched.append((self.s.seq, True, event_id, at, np.ones(len(at))))
        payload = encode_events(self.vin, self.s.seq, int(ts[0]), ids, ts, values, [x[3] for x in items])
        self.out.append(SimMessage(sent_at, f"vi/v1/{self.vin}/events", payload, 0, len(items), 0.0))

    # -- parked --------------------------------------------------------------

    def _serviced(self, ts: int) -> None:
        """Apply the services due by `ts`: the next report shows the reset (a workshop visit sends nothing itself)."""
        while self.services and self.services[0].from_ms <= ts:
            at = self.services.pop(0).from_ms
            self.s.service_km = 15_000.0
            self.s.service_s_at_start = 365 * 86_400 + (at - self.spec.start_ms) / 1000

    def heartbeat(self, ts: int) -> None:
        self._serviced(ts)
        p, s, t = self.p, self.s, np.array([ts], dtype=np.int64)
        energy = (
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
            if p.electric
            else "Vehicle.Powertrain.FuelSystem.RelativeLevel"
        )
        series = [
            self._series("Vehicle.LowVoltageSystemState", t, [_LVSS["LOCK"]]),
            self._series(energy, t, [s.energy_pct]),
            self._series("Vehicle.LowVoltageBattery.CurrentVoltage", t, [p.battery_v + self.rng.normal(0, 0.02)]),
            self._series("Vehicle.Service.DistanceToService", t, [s.service_km]),
            self._series("Vehicle.Service.TimeToService", t, [s.service_s_at_start - (ts - self.spec.start_ms) / 1000]),
        ]
        for i, path in enumerate(_TYRES):
            kpa = p.tyre_kpa if i == 0 else 240 + self.rng.normal(0, 2)
            series.append(self._series(path, t, [kpa]))
        self._send_signals(ts, series)

    def charge(self, ts: int, kind: str) -> None:
        start_soc = self.s.energy_pct
        self.s.energy_pct = 90.0
        end = ts + (40 if kind == "dc" else 240) * 60_000
        self._send_events(
            end,
            [
                (ts, "charging_session_started", int(start_soc), kind),
                (end, "charging_session_ended", int((90 - start_soc) * 600), kind),
            ],
        )
        self.truth.charging[(ts // DAY_MS, kind)] = self.truth.charging.get((ts // DAY_MS, kind), 0) + 1

    # -- driving -------------------------------------------------------------

    def trip(self, start: int, minutes: float, speed_range: tuple[float, float]) -> int:
        self._serviced(start)
        rng, s = self.rng, self.s
        dt_ms = max(1, round(1000 / self.spec.sample_hz))
        n = max(3, int(minutes * 60_000 // dt_ms))
        ts = start + np.arange(n, dtype=np.int64) * dt_ms
        speed = _speed_profile(rng, n, dt_ms / 1000, speed_range)
        step_m = np.concatenate([[0.0], (speed[1:] + speed[:-1]) / 2 / 3.6 * dt_ms / 1000])
        odo = np.floor(s.odometer_m + np.cumsum(step_m))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.05, n))
        lat = s.lat + np.cumsum(step_m * np.cos(heading)) / 111_000
        lon = s.lon + np.cumsum(step_m * np.sin(heading)) / (111_000 * np.cos(np.radians(s.lat)))
        use_per_km = 0.18 if self.p.electric else 0.12
        energy = np.maximum(3.0, s.energy_pct - (odo - odo[0]) / 1000 * use_per_km)
        energy_path = (
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
            if self.p.electric
            else "Vehicle.Powertrain.FuelSystem.RelativeLevel"
        )
        series = [
            self._series("Vehicle.Speed", ts, speed),
            self._series("Vehicle.TraveledDistance", ts, odo),
            self._series("Vehicle.CurrentLocation.Latitude", ts, lat),
            self._series("Vehicle.CurrentLocation.Longitude", ts, lon),
            self._series(
                "Vehicle.Acceleration.Longitudinal", ts, np.clip(np.gradient(speed / 3.6, dt_ms / 1000), -9, 9)
            ),
            self._series(energy_path, ts, energy),
            self._series("Vehicle.LowVoltageSystemState", ts[[0, -1]], [_LVSS["ON"], _LVSS["OFF"]]),
            *self._cockpit_states(int(ts[0]), int(ts[-1])),
        ]
        self._record_trip(series[0], series[1], series[3])
        self._cut(int(ts[0]), int(ts[-1]), series)
        self._send_events(int(ts[-1]), self._cockpit_events(int(ts[0]), int(ts[-1])))
        s.odometer_m, s.lat, s.lon = float(odo[-1]), float(lat[-1]), float(lon[-1])
        s.energy_pct = float(energy[-1])
        s.service_km -= float(odo[-1] - odo[0]) / 1000
        return int(ts[-1])

    def _record_trip(self, speed: _Series, odo: _Series, lon: _Series) -> None:
        _, s_exp, ts, v_raw = speed
        v = _scaled(v_raw, s_exp)
        km = float(_scaled(odo[3], odo[1])[-1] - _scaled(odo[3], odo[1])[0]) / 1000
        offset = round(float(_scaled(lon[3][:1], lon[1])[0]) * 4)
        seg = (v[1:] + v[:-1]) / 2 * (ts[1:] - ts[:-1]) / 3_600_000
        local = ((ts[1:] + ts[:-1]) // 2 + offset * 60_000) % DAY_MS
        night = (local < 5 * HOUR_MS) | (local >= 22 * HOUR_MS)
        self.truth.trips.append(
            TripTruth(int(ts[0]), int(ts[-1]), km, float(seg.sum()), float(seg[night].sum()), offset)
        )

    def _cockpit_states(self, t0: int, t1: int) -> list[_Series]:
        out = []
        for feature, path in _STATE_SIGNALS.items():
            if self.rng.random() < self.p.use.get(feature, 0.0):
                on = t0 + int(self.rng.uniform(0.05, 0.4) * (t1 - t0))
                off = on + int(self.rng.uniform(0.2, 0.5) * (t1 - t0))
                level = float(self.rng.choice([33, 66, 100])) if feature == "seat_heating" else 1.0
                out.append(self._series(path, np.array([on, off]), [level, 0.0]))
                self.truth.used(feature, on)
        return out

    def _cockpit_events(self, t0: int, t1: int) -> list[tuple[int, str, int, str]]:
        rng, use, items = self.rng, self.p.use, []
        span = t1 - t0

        def session(feature: str, start: str, end: str, text: str = "", value: int = 0) -> None:
            if rng.random() < use.get(feature, 0.0):
                a = t0 + int(rng.uniform(0.02, 0.5) * span)
                b = a + int(rng.uniform(0.1, 0.45) * span)
                items.extend([(a, start, 0, text), (b, end, value or (b - a), text)])
                self.truth.used(feature, a)

        session("navigation", "navigation_started", "navigation_ended", "work", 10_000)
        session("voice", "voice_session_started", "voice_session_ended", "navigation")
        session("app", "app_launched", "app_closed", str(rng.choice(_APPS)))
        session(
            "projection",
            "projection_connected",
            "projection_disconnected",
            str(rng.choice(["carplay", "android_auto"])),
        )
        if rng.random() < use.get("media", 0.0):
            items.append((t0 + 20_000, "media_source_changed", 0, str(rng.choice(_MEDIA_SOURCES))))
            self.truth.used("media", t0 + 20_000)
        for effect, own in self.voice:  # after every draw of the vehicle's own stream: it stays as it was
            if effect.from_ms <= t0 < effect.until_ms and own.random() < effect.probability:
                a = t0 + int(own.uniform(0.02, 0.5) * span)
                b = a + int(own.uniform(0.1, 0.45) * span)
                items += [(a, "voice_session_started", 0, "tutorial"), (b, "voice_session_ended", b - a, "tutorial")]
                self.truth.used("voice", a)
        return items

    def ota(self, ts: int) -> None:
        self._send_events(ts + 60_000, [(ts, "ota_offered", 0, "5.2.1"), (ts + 60_000, "ota_accepted", 0, "5.2.1")])
        self.truth.used("ota", ts + 60_000)

    def _cut(self, t0: int, t1: int, series: list[_Series]) -> None:
        window = int(self.spec.message_s * 1000)
        for lo in range(t0, t1 + 1, window):
            hi = min(lo + window, t1 + 1)
            part = []
            for sid, exp, ts, raw in series:
                a, b = np.searchsorted(ts, [lo, hi])
                part.append((sid, exp, ts[a:b], raw[a:b]))
            if any(len(p[2]) for p in part):
                self._send_signals(min(hi, t1), part)


def _speed_profile(rng: np.random.Generator, n: int, dt_s: float, speed_range: tuple[float, float]) -> np.ndarray:
    """Smoothed random cruising speeds (km/h) that start and end at rest."""
    knots = rng.uniform(*speed_range, max(2, n // max(1, int(120 / dt_s)) + 2))
    target = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) * dt_s / 30.0)
    speed = np.clip(target * ramp + rng.normal(0, 1.5, n) * ramp, 0, 180)
    speed[[0, -1]] = 0.0
    return speed


def _ownership(vins: list[str], spec: FleetSpec) -> list[Ownership]:
    """Mostly one owner per vehicle; every 7th owner has two; every 11th vehicle is sold 10 days before the end."""
    rows, owner = [], 0
    first_day = spec.start_ms - spec.start_ms % DAY_MS - 60 * DAY_MS
    sold_day = spec.end_ms - spec.end_ms % DAY_MS - 10 * DAY_MS
    for i, vin in enumerate(vins):
        if not (i % 7 == 1 and i > 0):
            owner += 1
        rows.append(Ownership(vin, f"owner-{owner:05d}", first_day, (f"driver-{owner:05d}-a",)))
        if i % 11 == 5:
            rows.append(Ownership(vin, f"owner-{len(vins) + i:05d}", sold_day, (f"driver-{len(vins) + i:05d}-a",)))
    return rows


_NORMAL = (20.0, 110.0)
_SLOW = (15.0, 40.0)
_FAST = (80.0, 130.0)


_CHARGE_MS = 300_000 + 240 * 60_000  # a charging session starts 5 min after a trip and lasts 4 h


def _at(day: int, local_hour: float, offset_min: int) -> int:
    return day + int(local_hour * HOUR_MS) - offset_min * 60_000


def _day_trips(
    p: Persona, day: int, weekday: int, end: int, rng: np.random.Generator, off: int
) -> list[tuple[int, float, tuple[float, float]]]:
    """(start_ms, minutes, speed range) of one day's trips for a driving pattern."""
    d, trips = p.driving, []
    days_left = (end - day) // DAY_MS
    if d == "dormant" and days_left < 20:
        return []
    if d == "churner" and days_left < 28:
        return [(_at(day, 12.0, off), 25, _NORMAL)] if days_left in (25, 18, 8, 4) else []
    if d in ("commuter", "churner") and weekday < 5:
        trips += [
            (_at(day, rng.uniform(7.5, 8.5), off), rng.uniform(20, 40), _NORMAL),
            (_at(day, rng.uniform(17.0, 18.5), off), rng.uniform(20, 40), _NORMAL),
        ]
    if d == "heavy_driver" and weekday < 5:
        trips += [
            (_at(day, rng.uniform(7.0, 8.0), off), rng.uniform(60, 90), _FAST),
            (_at(day, rng.uniform(16.5, 17.5), off), rng.uniform(60, 90), _FAST),
        ]
    if d == "weekend_driver" and weekday >= 5:
        trips += [(_at(day, h, off), rng.uniform(20, 50), _NORMAL) for h in sorted(rng.uniform(9, 18, 2))]
    if d == "night_driver" and rng.random() < 0.8:
        trips.append((_at(day, rng.uniform(22.3, 23.3), off), rng.uniform(25, 45), _NORMAL))
    if d == "light_driver" and (day // DAY_MS) % 7 == 3:
        trips.append((_at(day, 11.0, off), rng.uniform(8, 12), _SLOW))
    if d == "long_distance" and (day // DAY_MS) % 9 == 0 and days_left >= 1:
        trips.append((_at(day, 8.0, off), rng.uniform(140, 170), _FAST))
    if d in ("casual", "dormant", "long_distance", "commuter", "churner"):
        rate = 1.0 if d in ("casual", "dormant", "long_distance") else 0.3
        hours = sorted(rng.uniform(10, 16, rng.poisson(rate)))
        trips += [(_at(day, h, off), rng.uniform(10, 35), _NORMAL) for h in hours]
    return trips


def _vehicle_messages(sim: _VehicleSim, spec: FleetSpec, rng: np.random.Generator) -> None:
    p = sim.p
    off = round(sim.s.lon * 4)
    first_day = spec.start_ms - spec.start_ms % DAY_MS
    last_end, heartbeat = spec.start_ms, spec.start_ms
    beat = int(spec.heartbeat_s * 1000)
    ota_day = first_day + int(rng.integers(1, max(2, int(spec.duration_s // 86_400)))) * DAY_MS
    for day in range(first_day, spec.end_ms, DAY_MS):
        weekday = int((day // DAY_MS + 3) % 7)  # 1970-01-01 was a Thursday: 0 = Monday
        for start, minutes, speeds in sorted(_day_trips(p, day, weekday, spec.end_ms, rng, off)):
            if start < max(last_end + 60_000, spec.start_ms) or start + minutes * 60_000 > spec.end_ms - HOUR_MS:
                continue
            while heartbeat < start:
                sim.heartbeat(heartbeat)
                heartbeat += beat
            last_end = sim.trip(start, minutes, speeds)
            if not p.electric and sim.s.energy_pct < 15:
                sim.s.energy_pct = 95.0  # refuelled: no event for it in the catalog
            wants_charge = p.electric and (sim.s.energy_pct < 35 or (p.fast_charger and rng.random() < 0.25))
            # Nothing is sent after the window's end: a head unit cannot report the future.
            if wants_charge and last_end + _CHARGE_MS < spec.end_ms - 60_000:
                sim.charge(last_end + 300_000, "dc" if p.fast_charger else "ac")
                last_end += _CHARGE_MS
            heartbeat = max(heartbeat, last_end + 60_000)
        if day == ota_day and rng.random() < 0.6 and day + 20 * HOUR_MS < spec.end_ms - 60_000:
            sim.ota(day + 20 * HOUR_MS)
    while heartbeat < spec.end_ms - 60_000:
        sim.heartbeat(heartbeat)
        heartbeat += beat


def _watched(signals: SignalCatalog, events: EventCatalog) -> tuple[frozenset[int], frozenset[int]]:
    """(signal ids, event ids) the moments watch: the truth's moments watch what the gateway's do."""
    from vehicle_ingest.moments import load_moment_definitions

    moments = load_moment_definitions(signals, events)
    return (
        frozenset(s for m in moments for s in m.signal_ids),
        frozenset(m.event_id for m in moments if m.event_id is not None),
    )


def _simulate(
    index: int, child: np.random.Generator, spec: FleetSpec, signals: SignalCatalog, events: EventCatalog,
    effects: Sequence[Effect], watch: tuple[frozenset[int], frozenset[int]],
) -> tuple[VehicleTruth, list[SimMessage]]:  # fmt: skip
    sim = _VehicleSim(make_vin(child), assign_persona(index, child), spec, signals, events, child, watch, effects)
    _vehicle_messages(sim, spec, child)
    return sim.truth, sim.out


def simulate_vehicle(
    spec: FleetSpec, index: int, signals: SignalCatalog, events: EventCatalog, effects: Sequence[Effect] = ()
) -> tuple[VehicleTruth, list[SimMessage]]:
    """Vehicle `index` of the fleet `spec` alone, as `simulate_fleet` makes it (with `effects`, if any)."""
    child = np.random.default_rng(spec.seed).spawn(spec.vehicles)[index]
    return _simulate(index, child, spec, signals, events, effects, _watched(signals, events))


def simulate_fleet(
    spec: FleetSpec,
    signals: SignalCatalog,
    events: EventCatalog,
    effects: Mapping[int, Sequence[Effect]] | None = None,
) -> Fleet:
    """Every message the fleet sends over the window (ordered by send time), with what was sent.

    `effects`: vehicle index -> the changes of behaviour it undergoes (none by default).
    """
    watch = _watched(signals, events)
    root = np.random.default_rng(spec.seed)
    messages: list[SimMessage] = []
    vehicles: list[VehicleTruth] = []
    for index, child in enumerate(root.spawn(spec.vehicles)):
        truth, out = _simulate(index, child, spec, signals, events, (effects or {}).get(index, ()), watch)
        messages.extend(out)
        vehicles.append(truth)
    messages.sort(key=lambda m: m.sim_ts)
    return Fleet(spec, messages, vehicles, _ownership([v.vin for v in vehicles], spec))
