"""Decode throughput of wire format v1 against the plain msgpack layout a Python dev would write.

    python benchmarks/bench_decode.py [--messages 2000] [--repeat 7] [--json]

Each message is one vehicle's ~10 s batch of 20 signals at 1-10 Hz with slowly
varying values (speed random walk at 0.1 km/h, odometer increasing, SOC,
lat/lon at 1e-6 deg, pedals, temperatures...). Timestamps carry a few ms of
jitter on half of the signals, as CAN-derived samples do. Figures are single
threaded (the numba kernel is not parallel).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgpack
import numpy as np

from vehicle_ingest.codec import SignalBlock, decode, decode_reference, encode_signals, quantize

BATCH_MS = 10_000
EPOCH_MS = 1_795_000_000_000  # 2026-11


@dataclass(frozen=True)
class Signal:
    signal_id: int
    name: str
    hz: int
    scale_exp: int
    start: float
    step: float  # std-dev of the random-walk step per sample
    drift: float = 0.0  # mean step per sample (odometer, SOC)
    jitter: bool = False


SIGNALS = [
    Signal(1, "Vehicle.Speed", 10, -1, 60.0, 0.4, jitter=True),
    Signal(2, "Vehicle.TraveledDistance", 1, -1, 48_211.3, 0.0, drift=0.017),
    Signal(3, "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current", 1, -1, 71.0, 0.0, drift=-0.004),
    Signal(4, "Vehicle.CurrentLocation.Latitude", 1, -6, 48.137154, 0.00012),
    Signal(5, "Vehicle.CurrentLocation.Longitude", 1, -6, 11.576124, 0.00015),
    Signal(6, "Vehicle.Powertrain.ElectricMotor.Speed", 10, 0, 5200.0, 35.0, jitter=True),
    Signal(7, "Vehicle.OBD.RelativeAcceleratorPosition", 10, 0, 22.0, 1.5, jitter=True),
    Signal(8, "Vehicle.Chassis.Brake.PedalPosition", 10, 0, 0.0, 0.8),
    Signal(9, "Vehicle.Chassis.SteeringWheel.Angle", 10, -1, 0.0, 1.2, jitter=True),
    Signal(10, "Vehicle.Powertrain.TractionBattery.CurrentCurrent", 10, -1, 45.0, 2.0, jitter=True),
    Signal(11, "Vehicle.Powertrain.TractionBattery.CurrentVoltage", 5, -1, 398.0, 0.3),
    Signal(12, "Vehicle.Cabin.HVAC.AmbientAirTemperature", 1, -1, 21.5, 0.05),
    Signal(13, "Vehicle.Exterior.AirTemperature", 1, -1, 8.0, 0.02),
    Signal(14, "Vehicle.Powertrain.ElectricMotor.Temperature", 1, -1, 64.0, 0.1),
    Signal(15, "Vehicle.Acceleration.Longitudinal", 10, -2, 0.0, 0.15, jitter=True),
    Signal(16, "Vehicle.Acceleration.Lateral", 10, -2, 0.0, 0.12),
    Signal(17, "Vehicle.AngularVelocity.Yaw", 10, -2, 0.0, 0.3),
    Signal(18, "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure", 1, 0, 240.0, 0.2),
    Signal(19, "Vehicle.CurrentLocation.Heading", 5, -1, 90.0, 0.8, jitter=True),
    Signal(20, "Vehicle.CurrentLocation.Altitude", 1, -1, 520.0, 0.3),
]


def _series(rng: np.random.Generator, sig: Signal, t0: int) -> tuple[np.ndarray, np.ndarray]:
    n = BATCH_MS * sig.hz // 1000
    period = 1000 // sig.hz
    ts = t0 + np.arange(n, dtype=np.int64) * period
    if sig.jitter:
        ts += rng.integers(-3, 4, n)
    values = sig.start + np.cumsum(rng.normal(sig.drift, sig.step, n) if sig.step else np.full(n, sig.drift))
    return ts, values


def make_messages(n: int, seed: int = 1) -> list[tuple[str, int, int, list[tuple[Signal, np.ndarray, np.ndarray]]]]:
    """(vin, seq, base_ts, [(signal, ts, values)]) per message; 100 vehicles, consecutive batches."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        vehicle, batch = divmod(i, max(1, n // 100))
        vin = f"WVWZZZ1JZXW{vehicle:06d}"
        base = EPOCH_MS + batch * BATCH_MS
        out.append((vin, batch, base, [(s, *_series(rng, s, base + 5)) for s in SIGNALS]))
    return out


def ours(messages: list) -> list[bytes]:
    return [
        encode_signals(
            vin, seq, base, [SignalBlock(s.signal_id, s.scale_exp, ts, quantize(v, s.scale_exp)) for s, ts, v in sigs]
        )
        for vin, seq, base, sigs in messages
    ]


def plain_nested(messages: list) -> list[bytes]:
    """The obvious layout: {"vin", "seq", "signals": {sid: [ts list, value list]}}."""
    return [
        msgpack.packb(
            {
                "vin": vin,
                "seq": seq,
                "signals": {
                    s.signal_id: [ts.tolist(), v.round(-s.scale_exp if s.scale_exp < 0 else 0).tolist()]
                    for s, ts, v in sigs
                },
            }
        )
        for vin, seq, _, sigs in messages
    ]


def plain_columnar(messages: list) -> list[bytes]:
    """Flat columns per message: {"vin", "seq", "sid": [...], "ts": [...], "value": [...]}."""
    out = []
    for vin, seq, _, sigs in messages:
        sid = [s.signal_id for s, ts, _ in sigs for _ in range(len(ts))]
        ts = np.concatenate([t for _, t, _ in sigs]).tolist()
        val = np.concatenate([v.round(-s.scale_exp if s.scale_exp < 0 else 0) for s, _, v in sigs]).tolist()
        out.append(msgpack.packb({"vin": vin, "seq": seq, "sid": sid, "ts": ts, "value": val}))
    return out


def decode_plain_nested(payloads: Sequence[bytes]) -> tuple[np.ndarray, ...]:
    msg, sid, ts, val = [], [], [], []
    for i, p in enumerate(payloads):
        d = msgpack.unpackb(p, strict_map_key=False)
        for signal_id, (t, v) in d["signals"].items():
            ts.append(np.array(t, dtype=np.int64))
            val.append(np.array(v, dtype=np.float64))
            msg.append(np.full(len(t), i, dtype=np.int32))
            sid.append(np.full(len(t), signal_id, dtype=np.uint16))
    return tuple(np.concatenate(c) for c in (msg, sid, ts, val))


def decode_plain_columnar(payloads: Sequence[bytes]) -> tuple[np.ndarray, ...]:
    msg, sid, ts, val = [], [], [], []
    for i, p in enumerate(payloads):
        d = msgpack.unpackb(p)
        ts.append(np.array(d["ts"], dtype=np.int64))
        val.append(np.array(d["value"], dtype=np.float64))
        sid.append(np.array(d["sid"], dtype=np.uint16))
        msg.append(np.full(len(d["ts"]), i, dtype=np.int32))
    return tuple(np.concatenate(c) for c in (msg, sid, ts, val))


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def run(n_messages: int, repeat: int, ref_messages: int) -> dict:
    messages = make_messages(n_messages)
    payloads = ours(messages)
    t = time.perf_counter()
    ours(messages)
    encode_s = time.perf_counter() - t
    nested, columnar = plain_nested(messages), plain_columnar(messages)
    samples = sum(len(ts) for *_, sigs in messages for _, ts, _ in sigs)
    decode(payloads[:10])  # warm-up (compile or load the cache)
    batch = decode(payloads)
    assert len(batch.samples) == samples and (batch.messages.status == 0).all()
    numba_s = best_seconds(lambda: decode(payloads), repeat)
    ref_n = min(ref_messages, n_messages)
    ref_samples = int(batch.messages.n_items[:ref_n].sum())
    ref_s = best_seconds(lambda: decode_reference(payloads[:ref_n]), 1)
    nested_s = best_seconds(lambda: decode_plain_nested(nested), max(1, repeat // 2))
    columnar_s = best_seconds(lambda: decode_plain_columnar(columnar), max(1, repeat // 2))
    plain_s = min(nested_s, columnar_s)
    size = lambda ps: sum(map(len, ps)) / samples  # noqa: E731
    return {
        "cpu": cpu_model(),
        "messages": n_messages,
        "samples": samples,
        "samples_per_message": samples / n_messages,
        "numba_samples_per_s": samples / numba_s,
        "reference_samples_per_s": ref_samples / ref_s,
        "plain_nested_samples_per_s": samples / nested_s,
        "plain_columnar_samples_per_s": samples / columnar_s,
        "numba_vs_best_plain": plain_s / numba_s,
        "encode_samples_per_s": samples / encode_s,
        "wire_bytes_per_sample": size(payloads),
        "plain_nested_bytes_per_sample": size(nested),
        "plain_columnar_bytes_per_sample": size(columnar),
    }


def table(r: dict) -> str:
    rows = [
        ("numba decode", r["numba_samples_per_s"], r["wire_bytes_per_sample"]),
        ("reference decode", r["reference_samples_per_s"], r["wire_bytes_per_sample"]),
        ("plain msgpack, nested", r["plain_nested_samples_per_s"], r["plain_nested_bytes_per_sample"]),
        ("plain msgpack, columnar", r["plain_columnar_samples_per_s"], r["plain_columnar_bytes_per_sample"]),
    ]
    lines = [
        f"{r['messages']} messages, {r['samples']} samples ({r['samples_per_message']:.0f}/message), cpu: {r['cpu']}",
        f"{'path':<26}{'M samples/s':>12}{'bytes/sample':>14}",
    ]
    lines += [f"{name:<26}{rate / 1e6:>12.2f}{size:>14.2f}" for name, rate, size in rows]
    encode_rate = r["encode_samples_per_s"] / 1e6
    lines.append(f"numba vs best plain path: {r['numba_vs_best_plain']:.1f}x; encode: {encode_rate:.2f} M samples/s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7, help="runs per timing; the best counts")
    parser.add_argument("--ref-messages", type=int, default=200, help="the reference decoder is slow: time a prefix")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    result = run(args.messages, args.repeat, args.ref_messages)
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()
