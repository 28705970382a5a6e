"""Feature jobs, tag rules and the tag engine on the real embedded engine (no broker)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.helpers import SIGNALS, now_ms
from vehicle_ingest.catalog import load_event_catalog
from vehicle_ingest.cdp import Outbox
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.errors import CatalogError
from vehicle_ingest.features import FeatureJobs
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.owners import Ownership, parse_registry, save_registry
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.simulators.fleet import FleetSpec, simulate_fleet
from vehicle_ingest.simulators.truth import truth_tags
from vehicle_ingest.storage import Store
from vehicle_ingest.tags import OWNER_FEATURES, TagEngine, load_tag_definitions, parse_rule
from vehicle_ingest.tags.owner_features import owner_feature_parameters, owner_features_sql

EVENTS = load_event_catalog()
DEFINITIONS = load_tag_definitions()
DAY = 86_400_000


@pytest.fixture
def clean(store: Store) -> Store:
    for table in (
        "signals",
        "events",
        "dead_letters",
        "trips",
        "cockpit_usage",
        "job_state",
        "ownership",
        "tag_history",
        "cdp_deliveries",
        "latest_signals",
        "daily_activity",
    ):
        store.command(f"TRUNCATE TABLE {table}")
    return store


def _ingest(store: Store, messages, now: int) -> None:
    ingestor = Pipeline(store, SIGNALS, EVENTS, Metrics.create(CollectorRegistry()))
    for i in range(0, len(messages), 3000):
        chunk = messages[i : i + 3000]
        ingestor.ingest([m.topic for m in chunk], [m.payload for m in chunk], now)


def _loaded(store: Store, sim, end: int) -> TagEngine:
    """Registry, every message, one feature run: a tag engine ready on the simulated fleet."""
    save_registry(store, sim.ownership)
    _ingest(store, sim.messages, end)
    FeatureJobs(store, SIGNALS, EVENTS).run(end)
    return TagEngine(store, SIGNALS, DEFINITIONS, Outbox(store))


def _trips(store: Store) -> list[tuple]:
    return store.rows(
        "SELECT vin, trip_start, trip_end, round(distance_km, 6), round(night_share, 9), harsh_accel, harsh_brake,"
        " start_geohash, end_geohash FROM trips FINAL WHERE is_deleted = 0 ORDER BY vin, trip_start"
    )


def _usage(store: Store) -> list[tuple]:
    return store.rows(
        "SELECT vin, day, feature, detail, sessions, round(duration_s, 3) FROM cockpit_usage FINAL"
        " WHERE is_deleted = 0 ORDER BY vin, day, feature, detail"
    )


@pytest.fixture(scope="module")
def fleet():
    end = now_ms()
    return simulate_fleet(
        FleetSpec(14, end - 40 * DAY, 40 * 86400.0, sample_hz=0.05, seed=5, message_s=600), SIGNALS, EVENTS
    ), end


def test_late_out_of_order_and_duplicated_data_give_the_same_features_and_tags(clean, fleet):
    sim, end = fleet
    engine = _loaded(clean, sim, end)
    reference = (_trips(clean), _usage(clean))
    reference_tags = engine.current_tags(end)
    assert reference_tags == truth_tags(sim, DEFINITIONS, end)

    for table in ("signals", "events", "trips", "cockpit_usage", "job_state", "latest_signals"):
        clean.command(f"TRUNCATE TABLE {table}")
    rng = random.Random(9)
    shuffled = sim.messages[:]
    rng.shuffle(shuffled)
    early, late = shuffled[: len(shuffled) * 2 // 3], shuffled[len(shuffled) * 2 // 3 :]
    _ingest(clean, early + early[:500], end)
    jobs = FeatureJobs(clean, SIGNALS, EVENTS)
    jobs.run(end)  # features from partial data: trips split and merged again once the late data lands
    _ingest(clean, late + early[-300:], end + 120_000)
    jobs.run(end + 120_000)
    assert (_trips(clean), _usage(clean)) == reference
    assert engine.current_tags(end) == reference_tags


def test_running_the_tag_job_twice_delivers_nothing_the_second_time(clean, fleet):
    sim, end = fleet
    engine = _loaded(clean, sim, end)
    first = engine.run(end)
    second = engine.run(end)
    assert first.changes > 0 and second.changes == 0
    assert Outbox(clean).depth("any-sink") == first.changes


def test_removed_tags_are_emitted_and_message_ids_are_deterministic(clean):
    vin = "SMXTAGREMOVE00001"
    save_registry(clean, [Ownership(vin, "owner-x", now_ms() - 60 * DAY)])
    engine = TagEngine(clean, SIGNALS, DEFINITIONS, Outbox(clean))
    t0 = now_ms()
    added = engine.run(t0)
    assert added.added > 0 and added.removed == 0  # dormant and never-used adoption tags
    clean.command("TRUNCATE TABLE ownership")  # the owner sold the vehicle: no current owner any more
    removed = engine.run(t0 + 1000)
    assert removed.removed == added.added and removed.added == 0
    history = Outbox(clean).history("owner-x")
    assert len({c.message_id for c in history}) == len(history) == added.added * 2


def test_a_tag_that_comes_and_goes_many_times_emits_every_change(clean):
    vin = "SMXTAGFLXP0000001"
    owner = Ownership(vin, "owner-y", now_ms() - 60 * DAY)
    engine = TagEngine(clean, SIGNALS, DEFINITIONS, Outbox(clean))
    t0 = now_ms()
    counts = []
    for cycle in range(6):  # owns, sold, owns again, ...: every tag added and removed three times
        if cycle % 2 == 0:
            save_registry(clean, [owner])
        else:
            clean.command("TRUNCATE TABLE ownership")
        counts.append(engine.run(t0 + cycle * 1000).changes)
        assert engine.run(t0 + cycle * 1000 + 500).changes == 0  # settled after each change
    history = Outbox(clean).history("owner-y")
    assert counts[0] > 0 and counts == [counts[0]] * 6
    assert len({c.message_id for c in history}) == len(history) == counts[0] * 6
    per_tag = {}
    for change in history:
        per_tag.setdefault(change.tag, []).append((change.transition, change.action))
    for changes in per_tag.values():
        assert sorted(changes) == [(i, "added" if i % 2 == 0 else "removed") for i in range(6)]


def test_gap_rule_segments_trips_of_vehicles_without_ignition_state(clean):
    vin = "SMXNXGNXTXXN00001"
    speed, odo = SIGNALS.by_path("Vehicle.Speed"), SIGNALS.by_path("Vehicle.TraveledDistance")
    start = now_ms() - 3 * 3_600_000
    ts = np.concatenate([start + np.arange(0, 600_000, 10_000), start + 3_600_000 + np.arange(0, 300_000, 10_000)])
    v = np.where((ts - start) % 3_600_000 == 0, 0, 500)
    km = np.cumsum(np.full(len(ts), 14)).astype(np.int64)
    blocks = [
        SignalBlock(speed.id, -1, ts.astype(np.int64), v.astype(np.int64)),
        SignalBlock(odo.id, 0, ts.astype(np.int64), km),
    ]
    payload = encode_signals(vin, 1, int(ts[0]), blocks)
    out = Pipeline(clean, SIGNALS, EVENTS, Metrics.create(CollectorRegistry())).ingest(
        [f"vi/v1/{vin}/signals"], [payload], now_ms()
    )
    assert out.stored == 1
    FeatureJobs(clean, SIGNALS, EVENTS).run(now_ms())
    rows = clean.rows("SELECT segmented_by, duration_s, distance_km FROM trips FINAL ORDER BY trip_start")
    assert rows == [("gap", 590.0, 59 * 14 / 1000), ("gap", 290.0, 29 * 14 / 1000)]


def test_usage_before_a_change_of_owner_belongs_to_the_previous_owner(clean, fleet):
    sim, end = fleet
    sold = [o for o in sim.ownership if sum(1 for x in sim.ownership if x.vin == o.vin) > 1]
    assert sold, "the simulated fleet sells at least one vehicle"
    engine = _loaded(clean, sim, end)
    engine.refresh_features(end)
    buyer = max(sold, key=lambda o: o.valid_from_ms)
    row = clean.rows(
        "SELECT owned_days, trips_prev_28d FROM owner_features WHERE owner_id = %(o)s", {"o": buyer.owner_id}
    )
    assert row and row[0][0] == pytest.approx((end - buyer.valid_from_ms) / DAY)
    assert row[0][1] == 0  # trips before the sale are not the buyer's


def test_owner_features_sql_produces_exactly_the_rule_vocabulary(store):
    names, _ = store.query(
        "SELECT * FROM (" + owner_features_sql() + ") LIMIT 0", owner_feature_parameters(SIGNALS, now_ms())
    )
    assert names == ["owner_id", *OWNER_FEATURES]


def test_registry_errors_name_the_line():
    with pytest.raises(Exception, match="line 3") as err:
        parse_registry("vin,owner_id,valid_from\nSMXAAAAAAAAAAAAAA,o1,2026-01-01\nSMXIIII,o2,2026-01-01\n", "f.csv")
    assert "VIN alphabet" in str(err.value)


@pytest.mark.parametrize(
    "bad",
    [
        "km_28d >= 1 and __import__('os')",
        "km_28d.real > 1",
        "unknown_feature > 1",
        "km_28d > 'a'",
        "[km_28d]",
        "km_28d if 1 else 2",
    ],
)
def test_rules_reject_anything_but_formulas(bad):
    with pytest.raises(CatalogError):
        parse_rule(bad, set(OWNER_FEATURES), "test")


_VALUES = st.one_of(st.none(), st.integers(-50, 50), st.floats(-50, 50, allow_nan=False).map(lambda x: round(x, 2)))
_RULES = [
    "a > 1 and b <= 2",
    "a > 1 or b < -3",
    "not (a == b)",
    "a + b * 2 >= 3",
    "a / b > 1",
    "a < b < 10",
    "-a > 0 or (b != 1 and a >= 0)",
]


@settings(max_examples=60, deadline=None)
@given(a=_VALUES, b=_VALUES, text=st.sampled_from(_RULES))
def test_python_and_sql_forms_of_a_rule_agree(store, a, b, text):
    rule = parse_rule(text, {"a", "b"}, "test")
    sql = f"SELECT if({rule.to_sql()}, 1, 0) FROM (SELECT %(a)s AS a, %(b)s AS b)"
    got = store.rows(sql, {"a": a, "b": b})[0][0]
    assert bool(got) == rule.holds({"a": a, "b": b})


def test_a_run_cut_short_is_completed_by_the_next_with_the_same_message_ids(clean, fleet):
    sim, end = fleet
    engine = _loaded(clean, sim, end)
    _, diff = engine.plan(end)
    engine.emit(diff[: len(diff) // 3], end)  # the process died after the first slice
    completed = engine.run(end)
    assert completed.changes == len(diff) - len(diff) // 3
    ids = sorted(c.message_id for c in Outbox(clean).history())
    clean.command("TRUNCATE TABLE tag_history")
    engine.run(end)  # from scratch: the same changes get the same ids
    assert sorted(c.message_id for c in Outbox(clean).history()) == ids
    assert len(ids) == len(diff) > 0
