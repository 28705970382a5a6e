"""Tag computation time for 100,000 owners over 30 days of features on the embedded store (chDB).

Features are generated inside ClickHouse (INSERT ... SELECT FROM numbers()),
then the tag engine runs as the gateway runs it:

- `refresh`: rebuild owner_features (one row per owner, every rule input);
- `evaluate`: every tag rule over every owner, result in Python as {owner: [tags]};
- `first_run`: refresh + diff against the outbox + write every change to it
  (every tag of every owner is new: the worst case);
- `steady_run`: the same with nothing changed (the common case).

Usage: python benchmarks/bench_tags.py [--owners 100000] [--days 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.cdp import Outbox
from vehicle_ingest.storage import Store
from vehicle_ingest.tags import TagEngine, load_tag_definitions
from vehicle_ingest.tags.definitions import COCKPIT_FEATURES

DAY_MS = 86_400_000


def _generate(store: Store, owners: int, days: int, now_ms: int) -> dict[str, int]:
    p = {"n": owners, "now": now_ms, "days": days, "features": list(COCKPIT_FEATURES)}
    vin = "concat('SMX', leftPad(toString(v), 14, '0'))"
    store.command(
        "INSERT INTO ownership (vin, owner_id, valid_from, drivers) SELECT "
        f"{vin}, concat('owner-', toString(v)), fromUnixTimestamp64Milli(%(now)s - 90 * 86400000, 'UTC'), []"
        " FROM (SELECT number AS v FROM numbers(%(n)s))",
        p,
    )
    store.command(
        "INSERT INTO trips (vin, trip_start, trip_end, duration_s, distance_km, distance_speed_km, avg_speed_kmh,"
        " max_speed_kmh, harsh_accel, harsh_brake, energy_used_pct, energy_kind, night_share, start_geohash,"
        " end_geohash, tz_offset_min, segmented_by, computed_at) SELECT "
        f"{vin}, fromUnixTimestamp64Milli(s, 'UTC'), fromUnixTimestamp64Milli(s + 1800000, 'UTC'), 1800,"
        " km, km, km * 2, 110, 0, 0, 3, 'fuel', if(modulo(v, 9) = 0, 0.8, 0.02), 'u0xe4', 'u0xee', 40, 'ignition', now64(3)"
        " FROM (SELECT modulo(number, %(n)s) AS v, %(now)s - intDiv(number, %(n)s) * 43200000 - modulo(v, 7) * 3600000 AS s,"
        "       5 + modulo(v, 40) + modulo(number, 11) AS km"
        "       FROM numbers(%(n)s * %(days)s * 2) WHERE modulo(v, 13) != 0)",
        p,
    )
    store.command(
        "INSERT INTO cockpit_usage (vin, day, feature, detail, sessions, duration_s, computed_at) SELECT "
        f"{vin}, toDate(fromUnixTimestamp64Milli(%(now)s - d * 86400000, 'UTC')), %(features)s[f + 1], '', 1, 300,"
        " now64(3) FROM (SELECT intDiv(number, %(days)s * 10) AS v, modulo(intDiv(number, 10), %(days)s) AS d,"
        "       modulo(number, 10) AS f FROM numbers(%(n)s * %(days)s * 10)) WHERE modulo(v + d * 3 + f * 7, f + 2) = 0",
        p,
    )
    signals = load_signal_catalog()
    ids = [
        signals.by_path(x).id
        for x in (
            "Vehicle.Service.DistanceToService",
            "Vehicle.Service.TimeToService",
            "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure",
            "Vehicle.LowVoltageBattery.CurrentVoltage",
        )
    ]
    store.command(
        "INSERT INTO signals (vin, seq, signal_id, ts, value, received_at) SELECT "
        f"{vin}, 1, %(ids)s[k + 1], fromUnixTimestamp64Milli(%(now)s - 3600000, 'UTC'),"
        " [modulo(v, 30000) - 1000, modulo(v, 300) * 86400 - 86400, 180 + modulo(v, 80), 11.5 + modulo(v, 12) / 10][k + 1],"
        " fromUnixTimestamp64Milli(%(now)s, 'UTC')"
        " FROM (SELECT intDiv(number, 4) AS v, modulo(number, 4) AS k FROM numbers(%(n)s * 4))",
        {**p, "ids": ids},
    )
    # The gateway folds each batch's latest values itself (pipeline._aggregates); here SQL does it.
    store.command(
        "INSERT INTO latest_signals_batch (vin, signal_id, value, ts) SELECT vin, signal_id, value, ts FROM signals"
    )
    counts = {}
    for table in ("ownership", "trips", "cockpit_usage", "signals", "latest_signals"):
        counts[table] = int(store.rows(f"SELECT count() FROM {table}")[0][0])
    return counts


def _timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    now_ms = time.time_ns() // 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"chdb://{Path(tmp) / 'store'}")
        store.migrate()
        counts, gen_s = _timed(_generate, store, args.owners, args.days, now_ms)
        engine = TagEngine(store, load_signal_catalog(), load_tag_definitions(), Outbox(store))
        owners, refresh_s = _timed(engine.refresh_features, now_ms)
        tags, evaluate_s = _timed(engine.current_tags)
        first, first_s = _timed(engine.run, now_ms)
        steady, steady_s = _timed(engine.run, now_ms)
        store.close()
    figures = {
        "owners": owners,
        "days": args.days,
        "rows": counts,
        "generate_s": round(gen_s, 2),
        "refresh_s": round(refresh_s, 3),
        "evaluate_s": round(evaluate_s, 3),
        "compute_tags_s": round(refresh_s + evaluate_s, 3),
        "owner_tags": sum(len(t) for t in tags.values()),
        "tag_definitions": len(load_tag_definitions()),
        "first_run_s": round(first_s, 3),
        "first_run_changes": first.changes,
        "steady_run_s": round(steady_s, 3),
        "steady_run_changes": steady.changes,
    }
    if not args.json:
        for key, value in figures.items():
            print(f"{key:>20}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
