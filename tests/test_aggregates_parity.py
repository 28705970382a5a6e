"""The numba fold of a batch into `latest_signals` / `daily_activity` rows against its plain Python twin."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.codec import EventColumns, MessageColumns, SampleColumns
from vehicle_ingest.pipeline import CanRows, Decoded
from vehicle_ingest.pipeline._aggregates import DAY_MS, AggregateIds, aggregates_numba, aggregates_reference
from vehicle_ingest.validate import TopicColumns

SIGNALS = load_signal_catalog()
IDS = AggregateIds.of(SIGNALS)
BASE = 1_795_341_600_000
# Speed and odometer (what daily_activity keeps), two other catalog signals, and an id outside the catalog.
KNOWN = [int(i) for i in np.flatnonzero(SIGNALS.known)]
POOL = np.array([IDS.speed, IDS.odometer, KNOWN[5], KNOWN[40], 65_000], dtype=np.uint16)


def _batch(rng: np.random.Generator, n_msg: int, n_rows: int, wire_order: bool = False) -> Decoded:
    messages = MessageColumns(
        **{f.name: np.zeros(n_msg, dtype=np.int64) for f in fields(MessageColumns) if f.name not in ("vin", "seq")},
        vin=np.zeros(n_msg, dtype="S17"),
        seq=rng.integers(0, 2**63, n_msg).astype(np.uint64),
    )
    msg = rng.integers(0, n_msg, n_rows).astype(np.int32)
    # Timestamps over three UTC days, with ties (ms granularity over a narrow range) to exercise "first row wins".
    ts = BASE + rng.integers(-DAY_MS, 2 * DAY_MS, n_rows) // 1000 * 1000
    value = rng.normal(1000, 300, n_rows).round(1)
    sig = POOL[rng.integers(0, len(POOL), n_rows)]
    if wire_order:  # as messages arrive: each message's samples together, each signal's in one run
        order = np.lexsort((sig, msg))
        msg, sig, ts, value = msg[order], sig[order], ts[order], value[order]
    samples = SampleColumns(msg, sig, ts, value)
    empty = np.zeros(0, np.int64)
    events = EventColumns(np.zeros(0, np.int32), np.zeros(0, np.uint16), empty, empty, np.zeros(0, object))
    topics = TopicColumns(np.zeros(n_msg, "S17"), np.zeros(n_msg, np.uint8))
    return Decoded(messages, topics, samples, events, CanRows.empty(), np.zeros(n_msg, bool), BASE)


def _same(a: object, b: object) -> None:
    for f in fields(a):  # type: ignore[arg-type]
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, np.asarray(y).astype(x.dtype), err_msg=f.name)
        else:
            assert x == y, f.name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_msg=st.integers(1, 40),
    n_rows=st.integers(0, 3000),
    n_vins=st.integers(1, 5),
    wire_order=st.booleans(),
)
def test_numba_and_reference_fold_a_batch_to_the_same_rows(
    seed: int, n_msg: int, n_rows: int, n_vins: int, wire_order: bool
):
    """Rows in any order, and in the wire's (runs of one message's signal, where the fold skips
    the hash for a row keyed like its predecessor)."""
    rng = np.random.default_rng(seed)
    decoded = _batch(rng, n_msg, n_rows, wire_order)
    vins = [f"SMXAGG00000000{k:03d}" for k in range(n_vins)]
    vin_index = rng.integers(0, n_vins, n_msg).astype(np.int32)
    accepted = rng.random(n_msg) < 0.8
    fast = aggregates_numba(decoded, vins, vin_index, accepted, IDS)
    plain = aggregates_reference(decoded, vins, vin_index, accepted, IDS)
    _same(fast[0], plain[0])
    _same(fast[1], plain[1])


def test_the_fold_keeps_the_last_value_and_the_days_extremes():
    """A hand-checked case: ties on ts keep the first row; a message spanning midnight gives two day rows."""
    rng = np.random.default_rng(0)
    decoded = _batch(rng, 2, 0)
    midnight = BASE - BASE % DAY_MS + DAY_MS
    s = SampleColumns(
        np.array([0, 0, 0, 0, 1], np.int32),
        np.array([IDS.speed, IDS.speed, IDS.odometer, IDS.odometer, 65_000], np.uint16),
        np.array([midnight - 5, midnight - 5, midnight - 1, midnight + 1, midnight + 9], np.int64),
        np.array([10.0, 20.0, 500.0, 501.0, 7.0]),
    )
    decoded = Decoded(decoded.messages, decoded.topics, s, decoded.events, decoded.can, decoded.can_model_unknown, BASE)
    latest, daily = aggregates_numba(decoded, ["SMXAGG00000000001"], np.zeros(2, np.int32), np.ones(2, bool), IDS)
    assert list(zip(latest.signal_id.tolist(), latest.value.tolist(), strict=True)) == [
        (IDS.speed, 10.0),
        (IDS.odometer, 501.0),
    ]
    assert daily.day.tolist() == [midnight // DAY_MS - 1, midnight // DAY_MS]
    assert (daily.odo_min.tolist(), daily.has_odo.tolist()) == ([500.0, 501.0], [True, True])
    assert (daily.speed_max[0], daily.has_speed.tolist()) == (20.0, [True, False])  # the max, not the last
