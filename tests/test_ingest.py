"""The ingest stage against the real embedded ClickHouse engine (chDB), no broker."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.helpers import now_ms, speed_message
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.storage import Store


@pytest.fixture
def ingestor(store: Store) -> Pipeline:
    for table in ("signals", "events", "dead_letters"):
        store.command(f"TRUNCATE TABLE {table}")
    return Pipeline(store, load_signal_catalog(), load_event_catalog(), Metrics.create(CollectorRegistry()))


def _ingest(ingestor: Pipeline, messages):
    return ingestor.ingest([m.topic for m in messages], [m.payload for m in messages], now_ms())


def test_migrations_are_idempotent(store):
    assert store.migrate() == []
    names = {r[0] for r in store.rows("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert {"signals", "events", "dead_letters", "schema_migrations"} <= names


def test_same_identity_twice_in_one_batch_is_stored_once(ingestor, store):
    m = speed_message("SMXBATCHDUP000001", 7)
    out = _ingest(ingestor, [m, m, m])
    assert (out.stored, out.duplicates) == (1, 2)
    assert store.stats()["samples"] == m.samples


def test_retrying_a_stored_batch_stores_nothing(ingestor, store):
    batch = [speed_message("SMXRETRY000000001", seq) for seq in range(1, 6)]
    first = _ingest(ingestor, batch)
    again = _ingest(ingestor, [*batch[2:], speed_message("SMXRETRY000000001", 6)])
    assert (first.stored, again.stored, again.duplicates) == (5, 1, 3)
    stats = store.stats()
    assert stats["messages"] == 6 and stats["samples"] == 60


def test_reused_sequence_number_with_other_content_is_rejected_not_dropped(ingestor, store):
    vin = "SMXREUSE000000001"
    _ingest(ingestor, [speed_message(vin, 1, base_ts=now_ms() - 600_000)])
    out = _ingest(ingestor, [speed_message(vin, 1, base_ts=now_ms() - 60_000)])
    assert out.stored == 0 and out.rejected == {"seq_reused": 1}
    assert store.rows("SELECT reason FROM dead_letters FINAL") == [("seq_reused",)]


def test_values_round_trip_exactly(ingestor, store):
    raw = np.array([0, 1, -1, 1234, 2999], dtype=np.int64)
    m = speed_message("SMXVALUES00000001", 1, n=5, values=raw)
    _ingest(ingestor, [m])
    got = [r[0] for r in store.rows("SELECT value FROM signals ORDER BY ts")]
    assert got == [0.0, 0.1, -0.1, 123.4, 299.9]


def test_rejected_copy_never_shadows_a_valid_message_with_the_same_identity(ingestor, store):
    vin = "SMXSHADW000000001"
    impostor = speed_message(vin, 1, topic_vin="SMXSHADW000000002")  # rejected: vin_mismatch
    valid = speed_message(vin, 1, base_ts=now_ms() - 120_000)
    out = _ingest(ingestor, [impostor, valid])
    assert (out.stored, out.duplicates) == (1, 0)
    assert out.rejected == {"vin_mismatch": 1}
    assert store.stats()["samples"] == valid.samples


def test_reused_sequence_number_inside_one_batch_is_rejected(ingestor, store):
    vin = "SMXREUSEBATCH0001"
    first = speed_message(vin, 1, base_ts=now_ms() - 600_000)
    other = speed_message(vin, 1, base_ts=now_ms() - 60_000)
    out = _ingest(ingestor, [first, other, first])
    assert (out.stored, out.duplicates) == (1, 1)
    assert out.rejected == {"seq_reused": 1}


def test_identity_lookup_handles_batches_larger_than_one_query(ingestor, store):
    vin = "SMXLARGEBATCH0001"
    batch = [speed_message(vin, (7 << 32) | seq, n=1) for seq in range(5000)]
    assert _ingest(ingestor, batch).stored == 5000
    again = _ingest(ingestor, batch)
    assert (again.stored, again.duplicates) == (0, 5000)
