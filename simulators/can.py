"""CAN frame streams from a DBC: vehicles whose head units upload raw frames (stream `can`).

Each vehicle drives one trip (the fleet simulator's speed profile) and its ECUs
send frames at their usual rates: vehicle dynamics at 10 Hz, battery status at
2 Hz (multiplexer pages 0 and 1 alternating), ignition, odometer (big-endian)
and fuel level (a float, 29-bit id) at 1 Hz, plus a diagnostic frame the DBC
does not define. cantools encodes every frame from the DBC, and decodes it
again to record the truth: the catalog samples and DBC-named values the
gateway must store, computed without the project's decoder.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from vehicle_ingest.can.mapping import load_mapping, unit_conversion
from vehicle_ingest.can.models import default_models_path
from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.codec import encode_can
from vehicle_ingest.simulators.fleet import SimMessage, _speed_profile, make_vin

__all__ = ["CanFleetSpec", "CanTruth", "simulate_can_fleet"]

_UNKNOWN_ID = 0x7DF  # OBD-II functional request: on the bus, in no DBC of ours
_RATES_HZ = {"VehicleDynamics": 10, "BatteryStatus": 2, "IgnitionStatus": 1, "Odometer": 1, "FuelLevel": 1}


@dataclass(frozen=True, slots=True)
class CanFleetSpec:
    vehicles: int
    start_ms: int
    duration_s: float
    seed: int = 1
    message_s: float = 10.0  # simulated seconds of frames per message


@dataclass
class CanTruth:
    messages: int = 0
    frames: int = 0
    unknown_frames: int = 0
    samples: int = 0  # catalog samples (mapped signals)
    unmapped: int = 0  # values stored under their DBC name
    value_sum: float = 0.0  # of the catalog samples, in catalog units

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _model_files() -> tuple[Path, Path]:
    path = default_models_path()
    model = tomllib.loads(path.read_text())["model"][0]
    return path.parent / model["dbc"][0], path.parent / model["mapping"]


class _Encoder:
    """cantools database + mapping: frame bytes, and what a correct decoder must find in them."""

    def __init__(self, catalog: SignalCatalog) -> None:
        import cantools

        dbc, mapping = _model_files()
        self.db = cast("cantools.database.can.Database", cantools.database.load_file(str(dbc)))  # a .dbc file
        self.mapped: dict[str, tuple[float, float]] = {}
        for rule in load_mapping(mapping):
            sig = self.db.get_message_by_name(rule.message).get_signal_by_name(rule.signal)
            conv = unit_conversion(sig.unit or "", catalog.by_path(rule.catalog).unit) or (1.0, 0.0)
            self.mapped[f"{rule.message}.{rule.signal}"] = conv

    def frame(self, name: str, values: dict[str, float]) -> tuple[int, bool, bytes, int, int, float]:
        """(id, extended, data, catalog samples, unmapped values, sum of the samples)."""
        msg = self.db.get_message_by_name(name)
        data = msg.encode(values, strict=False)
        samples, unmapped, total = 0, 0, 0.0
        decoded = cast("dict[str, float]", msg.decode(data, decode_choices=False))  # one plain message, no choices
        for sig, value in decoded.items():
            conv = self.mapped.get(f"{name}.{sig}")
            if conv is None:
                unmapped += 1
            else:
                samples += 1
                total += float(value) * conv[0] + conv[1]
        return msg.frame_id, msg.is_extended_frame, data, samples, unmapped, total


_Frame = tuple[int, int, bool, bytes, int, int, float]  # (ts, arb_id, extended, data, samples, unmapped, sum)


def _vehicle_frames(enc: _Encoder, spec: CanFleetSpec, rng: np.random.Generator) -> list[_Frame]:
    """(ts, arb_id, extended, data, samples, unmapped, sum) per frame of one vehicle's trip."""
    n = int(spec.duration_s * 10)
    speed = _speed_profile(rng, n, 0.1, (30.0, 110.0))
    accel = np.gradient(speed / 3.6, 0.1)
    odo_km = rng.uniform(5_000, 150_000) + np.cumsum(speed / 3.6 * 0.1) / 1000
    fuel = rng.uniform(40, 90) - np.linspace(0, 2, n)
    frames = []
    for i in range(n):
        ts = spec.start_ms + i * 100
        values = {
            "VehicleSpeed": speed[i],
            "LongitudinalAccel": accel[i],
            "LateralAccel": rng.normal(0, 0.3),
            "EngineSpeed": 800 + speed[i] * 25,
        }
        frames.append((ts, *enc.frame("VehicleDynamics", values)))
        if i % 5 == 0:
            page = (i // 5) % 2
            battery = {
                "BatteryPage": page,
                "StateOfCharge": 80 - i * 0.001,
                "CellTempMax": 25.0,
                "PackVoltage": 380.0,
                "PackCurrent": -speed[i] * 0.5,
            }
            frames.append((ts + 3, *enc.frame("BatteryStatus", battery)))
        if i % 10 == 0:
            frames.append(
                (ts + 5, *enc.frame("IgnitionStatus", {"IgnitionState": 4, "LowVoltageBatteryVoltage": 14.1}))
            )
            frames.append((ts + 6, *enc.frame("Odometer", {"OdometerTotal": odo_km[i], "TripCounter": i // 10})))
            frames.append((ts + 7, *enc.frame("FuelLevel", {"FuelLevelPercent": fuel[i], "FuelTemperature": 20.0})))
        if i % 50 == 0:
            frames.append((ts + 8, _UNKNOWN_ID, False, bytes([2, 1, 0x0D, 0, 0, 0, 0, 0]), 0, 0, 0.0))
    return frames


def _messages(vin: str, frames: list[_Frame], spec: CanFleetSpec, truth: CanTruth) -> list[SimMessage]:
    out, window = [], int(spec.message_s * 1000)
    seq = 0
    for lo in range(spec.start_ms, spec.start_ms + int(spec.duration_s * 1000), window):
        part = [f for f in frames if lo <= f[0] < lo + window]
        if not part:
            continue
        seq += 1
        ts, ids, ext, data, samples, unmapped, sums = zip(*part, strict=True)
        lengths = [len(d) for d in data]
        payload = encode_can(vin, seq, lo, list(ts), list(ids), b"".join(data), lengths, extended=list(ext))
        out.append(SimMessage(lo + window, f"vi/v1/{vin}/can", payload, sum(samples), 0, float(sum(sums))))
        truth.messages += 1
        truth.frames += len(part)
        truth.unknown_frames += sum(1 for i in ids if i == _UNKNOWN_ID)
        truth.samples += sum(samples)
        truth.unmapped += sum(unmapped)
        truth.value_sum += float(sum(sums))
    return out


def simulate_can_fleet(spec: CanFleetSpec, catalog: SignalCatalog) -> tuple[list[SimMessage], CanTruth]:
    """Every vehicle's CAN messages (merged in send order) and the truth of what they carry."""
    enc = _Encoder(catalog)
    rng = np.random.default_rng(spec.seed)
    truth = CanTruth()
    messages: list[SimMessage] = []
    for _ in range(spec.vehicles):
        vin = make_vin(rng)
        messages += _messages(vin, _vehicle_frames(enc, spec, rng), spec, truth)
    messages.sort(key=lambda m: m.sim_ts)
    return messages, truth
