"""`MomentEngine.evaluate` alone on one load-generator-shaped batch, state in memory (no store round trip).

The batch is what `vehicle-ingest load` sends at 1 M samples/s: 2,000 messages from 2,000 of
10,000 VINs, each 10 signals at 10 Hz over 5 s (1 M samples), of which the 12 V battery voltage
and the fuel level (2 of the 10) are watched by the shipped moments, plus a few cockpit events.
Every VIN has been seen once before (its state is in memory), as in a running gateway; the store
is a stub that knows nothing and no owner, so no moment is sent. `evaluate` leaves the engine's
state alone, so the same batch is timed again and again.

Prints one JSON object last: evaluate's best and median ms per batch, samples and watched rows.

Usage: python benchmarks/bench_moment_eval.py [--repeat 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.moments import MomentEngine, load_moment_definitions

VINS, MESSAGES, SIGNALS, SAMPLES = 10_000, 2_000, 10, 50  # 50 samples: 10 Hz for 5 s
PATHS = (
    "Vehicle.Speed",
    "Vehicle.Acceleration.Longitudinal",
    "Vehicle.Acceleration.Lateral",
    "Vehicle.CurrentLocation.Latitude",
    "Vehicle.CurrentLocation.Longitude",
    "Vehicle.CurrentLocation.Heading",
    "Vehicle.Powertrain.CombustionEngine.Speed",
    "Vehicle.TraveledDistance",
    "Vehicle.Powertrain.FuelSystem.RelativeLevel",
    "Vehicle.LowVoltageBattery.CurrentVoltage",
)  # the load generator's first 10 signals


class _NoStore:
    """Knows no history, no owner, no earlier moment."""

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return []


def _batch(first_vin: int, t0: int, rng: np.random.Generator) -> tuple[SimpleNamespace, SimpleNamespace]:
    """(decoded, plan) of MESSAGES messages from VINs first_vin.., samples from t0 on."""
    catalog = load_signal_catalog()
    ids = np.array([catalog.by_path(p).id for p in PATHS], dtype=np.uint16)
    per_msg = SIGNALS * SAMPLES
    msg = np.repeat(np.arange(MESSAGES, dtype=np.int32), per_msg)
    signal_id = np.tile(np.repeat(ids, SAMPLES), MESSAGES)
    ts = t0 + np.tile(np.arange(SAMPLES, dtype=np.int64) * 100, SIGNALS * MESSAGES)
    value = np.tile(np.repeat(np.array([60, 0, 0, 48, 11, 180, 2000, 4.8e7, 55, 14.1]), SAMPLES), MESSAGES)
    value = value + rng.normal(0, 0.05, len(value))
    voice = load_event_catalog().by_name("voice_session_started").id
    events = SimpleNamespace(
        msg=np.arange(0, MESSAGES, 200, dtype=np.int32),
        event_id=np.full(MESSAGES // 200, voice, np.uint16),
        ts=np.full(MESSAGES // 200, t0, np.int64),
    )  # a few cockpit events, riding on signal messages here (only their rows matter)
    vins = [f"LDX{k:014d}" for k in range(first_vin, first_vin + MESSAGES)]
    decoded = SimpleNamespace(
        signals=SimpleNamespace(msg=msg, signal_id=signal_id, ts=ts, value=value),
        events=events,
        messages=SimpleNamespace(seq=np.arange(MESSAGES, dtype=np.uint64)),
    )
    plan = SimpleNamespace(vins=vins, vin_index=np.arange(MESSAGES, dtype=np.int32), accepted=np.ones(MESSAGES, bool))
    return decoded, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    definitions = load_moment_definitions(load_signal_catalog(), load_event_catalog())
    engine = MomentEngine(_NoStore(), definitions, Metrics.create(CollectorRegistry()))  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    t0 = 1_700_000_000_000
    for k in range(VINS // MESSAGES):  # every VIN once: its state is in memory from now on
        engine.commit(engine.evaluate(*_batch(k * MESSAGES, t0, rng)))  # type: ignore[arg-type]
    decoded, plan = _batch(0, t0 + 5_000, rng)
    engine.evaluate(decoded, plan)  # type: ignore[arg-type]
    times = timeit.repeat(lambda: engine.evaluate(decoded, plan), number=1, repeat=args.repeat)  # type: ignore[arg-type]
    result = {
        "evaluate_ms_best": round(min(times) * 1e3, 2),
        "evaluate_ms_median": round(float(np.median(times)) * 1e3, 2),
        "samples": len(decoded.signals.ts),
        "watched_rows": int(np.isin(decoded.signals.signal_id, [s for m in definitions for s in m.signal_ids]).sum()),
    }
    if not args.json:
        print(
            f"evaluate: best {result['evaluate_ms_best']} ms, median {result['evaluate_ms_median']} ms", file=sys.stderr
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
