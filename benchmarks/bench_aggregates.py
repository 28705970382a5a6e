"""The aggregates fold (`latest_signals`, `daily_activity` rows) of one gateway batch.

    python benchmarks/bench_aggregates.py [--messages 2000] [--repeat 15] [--json]

The batch is what the load generator sends (`vehicle-ingest load`): `--messages` vehicles'
5 s batches of 10 signals at 10 Hz (500 samples each), decoded by the gateway's decoder, every
message accepted. Figures are single threaded; the median of `--repeat` folds after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vehicle_ingest.catalog import SignalCatalog, load_event_catalog, load_signal_catalog
from vehicle_ingest.codec import decode_numba
from vehicle_ingest.pipeline import CanRows, Decoded
from vehicle_ingest.pipeline._aggregates import AggregateIds, aggregates_numba
from vehicle_ingest.simulators.load_fleet import LoadFleet, LoadSpec
from vehicle_ingest.validate import TopicColumns


def batch(messages: int, signals: SignalCatalog) -> Decoded:
    fleet = LoadFleet(LoadSpec(vehicles=messages, rate=messages / 5, duration_s=1), signals, load_event_catalog())
    out = decode_numba([fleet.signal_message(v, 0).payload for v in range(messages)])
    topics = TopicColumns(np.zeros(messages, "S17"), np.zeros(messages, np.uint8))
    return Decoded(out.messages, topics, out.samples, out.events, CanRows.empty(), np.zeros(messages, bool), 0)


def run(messages: int, repeat: int) -> dict[str, float | int]:
    signals = load_signal_catalog()
    decoded = batch(messages, signals)
    ids = AggregateIds.of(signals)
    vins = [f"BENCHAGG{v:09d}" for v in range(messages)]
    vin_index, accepted = np.arange(messages, dtype=np.int32), np.ones(messages, bool)
    aggregates_numba(decoded, vins, vin_index, accepted, ids)  # compile or load numba's cache
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        aggregates_numba(decoded, vins, vin_index, accepted, ids)
        seconds.append(time.perf_counter() - started)
    samples = len(decoded.signals.msg)
    median = float(np.median(seconds))
    return {
        "messages": messages,
        "samples": samples,
        "fold_ms_median": round(median * 1e3, 2),
        "samples_per_s": round(samples / median),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    result = run(args.messages, args.repeat)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['samples']:,} samples: {result['fold_ms_median']} ms per fold, {result['samples_per_s']:,} samples/s"
        )


if __name__ == "__main__":
    main()
