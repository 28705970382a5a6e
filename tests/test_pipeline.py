"""The staged pipeline against the real engine: pipelined identities, refusals narrowed down, derived aggregates.

The gateway prepares batch N+1 (decode, validate, identity lookup on a connection of its own)
while batch N commits; these tests drive that interleaving by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.helpers import now_ms, speed_message
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.errors import StoreUnavailableError
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.receipts import ReceiptBook, decode_receipt
from vehicle_ingest.simulators.fleet import FleetSpec, simulate_fleet
from vehicle_ingest.storage import Store

SIGNALS, EVENTS = load_signal_catalog(), load_event_catalog()
DAY_MS = 86_400_000
TABLES = ("signals", "events", "can_signals", "dead_letters", "latest_signals", "daily_activity")


@pytest.fixture
def lookup(store: Store):
    """A second connection to the same store, as the gateway's lookup thread has."""
    for table in TABLES:
        store.command(f"TRUNCATE TABLE {table}")
    second = Store.open(store.dsn)
    yield second
    second.close()


@pytest.fixture
def pipeline(store: Store, lookup: Store) -> Pipeline:
    return Pipeline(store, SIGNALS, EVENTS, Metrics.create(CollectorRegistry()), lookup=lookup)


def _raw(messages):
    return [m.topic for m in messages], [m.payload for m in messages]


def test_the_next_batch_counts_the_committing_batch_as_stored(pipeline, store):
    """N+1 is prepared before N commits and carries copies of N's messages: stored once, both acked as stored."""
    vin = "SMXPPLN0000000001"
    n = [speed_message(vin, seq) for seq in (1, 2, 3)]
    first = pipeline.prepare(*_raw(n), now_ms())
    second = pipeline.prepare(*_raw([n[1], n[2], speed_message(vin, 4)]), now_ms())
    assert second.plan.relied == {(vin.encode(), 2), (vin.encode(), 3)}
    a, b = pipeline.commit(first), pipeline.commit(second)
    assert (a.stored, b.stored, b.duplicates) == (3, 1, 2)
    assert store.stats()["messages"] == 4 and store.stats()["samples"] == 40
    assert len(pipeline.pending) == 0
    book = ReceiptBook()
    book.add(b.verdicts)
    (receipt,) = [decode_receipt(p) for _, p in book.drain()]
    assert receipt.stored == ((2, 4),) and receipt.rejected == ()


def test_a_commit_that_failed_is_replanned_and_writes_only_what_is_missing(pipeline, store):
    """The store cannot take signals (too many parts): nothing acked; replanned, the retry stores each row once."""
    batch = [speed_message("SMXPPLN0000000002", seq) for seq in range(1, 6)]
    prepared = pipeline.prepare(*_raw(batch), now_ms())
    store.command("ALTER TABLE signals MODIFY SETTING max_parts_in_total = 0")
    try:
        with pytest.raises(StoreUnavailableError, match="signals"):
            pipeline.commit(prepared)
    finally:
        store.command("ALTER TABLE signals RESET SETTING max_parts_in_total")
    assert len(pipeline.pending) == 5  # still held: a batch prepared meanwhile must not write them too
    outcome = pipeline.commit(pipeline.replan(prepared))
    assert (outcome.stored, outcome.samples) == (5, 50)
    assert store.stats()["samples"] == 50


def test_a_message_the_store_refuses_is_dead_lettered_whole_and_the_rest_is_stored(pipeline, store):
    """A constraint refuses one message's rows: the batch is narrowed down to it, the other nine are stored."""
    values = np.arange(2000, dtype=np.int64) * 7919 % 4000  # a payload above the 4096 bytes dead letters keep
    batch = [speed_message("SMXPPLN0000000003", seq, 2000, now_ms() - 3_000_000, values=values) for seq in range(1, 11)]
    store.command("ALTER TABLE signals ADD CONSTRAINT refuse_seq_7 CHECK seq != 7")
    try:
        outcome = pipeline.ingest(*_raw(batch), now_ms())
    finally:
        store.command("ALTER TABLE signals DROP CONSTRAINT refuse_seq_7")
    assert (outcome.stored, dict(outcome.rejected)) == (9, {"store_rejected": 1})
    assert store.rows("SELECT uniqExact(seq), count() FROM signals") == [(9, 18_000)]
    (row,) = store.rows("SELECT seq, reason, payload_size, length(payload) FROM dead_letters FINAL")
    assert row == (7, "store_rejected", len(batch[6].payload), len(batch[6].payload))  # whole, above 4096 bytes
    assert len(batch[6].payload) > 4096
    book = ReceiptBook()
    book.add(outcome.verdicts)
    (receipt,) = [decode_receipt(p) for _, p in book.drain()]
    assert receipt.rejected == ((7, "store_rejected"),) and receipt.stored == ((1, 6), (8, 10))


def test_a_batch_relying_on_a_refused_message_is_replanned(pipeline, store):
    """N+1 counted N's message as stored; the store refused it in N: N+1 finds out and is refused too, not acked as
    stored by a receipt that would make the head unit drop it."""
    vin = "SMXPPLN0000000004"
    m = speed_message(vin, 7)
    first = pipeline.prepare(*_raw([m]), now_ms())
    second = pipeline.prepare(*_raw([m, speed_message(vin, 8)]), now_ms())
    store.command("ALTER TABLE signals ADD CONSTRAINT refuse_seq_7 CHECK seq != 7")
    try:
        a, b = pipeline.commit(first), pipeline.commit(second)
    finally:
        store.command("ALTER TABLE signals DROP CONSTRAINT refuse_seq_7")
    assert dict(a.rejected) == {"store_rejected": 1}
    assert (b.stored, b.duplicates, dict(b.rejected)) == (1, 0, {"store_rejected": 1})


def test_aggregates_equal_what_the_stored_samples_give(pipeline, store):
    """latest_signals and daily_activity, fed per batch (redeliveries included), equal the aggregates of `signals`."""
    end = now_ms()
    sim = simulate_fleet(
        FleetSpec(5, end - 3 * DAY_MS, 3 * 86400.0, sample_hz=0.05, seed=5, message_s=900), SIGNALS, EVENTS
    )
    messages = sim.messages
    rng = np.random.default_rng(3)
    for lo in range(0, len(messages), 400):
        chunk = messages[lo : lo + 400]
        again = [messages[i] for i in rng.integers(0, lo + len(chunk), 40)]  # redeliveries, old and new
        pipeline.ingest(*_raw(chunk + again), end)
    latest = store.rows(
        "SELECT vin, signal_id, argMaxMerge(last_value), maxMerge(last_ts) FROM latest_signals"
        " GROUP BY vin, signal_id ORDER BY vin, signal_id"
    )
    want = store.rows(
        "SELECT vin, signal_id, argMax(value, ts), max(ts) FROM signals GROUP BY vin, signal_id ORDER BY vin, signal_id"
    )
    assert latest == want and len(latest) > 20
    speed, odo = SIGNALS.by_path("Vehicle.Speed").id, SIGNALS.by_path("Vehicle.TraveledDistance").id
    daily = store.rows(
        "SELECT vin, day, minMerge(odo_min), maxMerge(odo_max), maxMerge(speed_max), uniqExactMerge(messages)"
        " FROM daily_activity GROUP BY vin, day ORDER BY vin, day"
    )
    want = store.rows(
        f"SELECT vin, toDate(ts) AS day, minIf(value, signal_id = {odo}), maxIf(value, signal_id = {odo}),"
        f" maxIf(value, signal_id = {speed}), uniqExact(seq) FROM signals GROUP BY vin, day ORDER BY vin, day"
    )
    assert daily == want and len(daily) >= 15


class _CommitsFirst:
    """The lookup connection, with batch N's commit (inserts, then its identities released) landing right after
    N+1's first store query returned: the race the gateway's two threads run every batch."""

    def __init__(self, lookup: Store, commit) -> None:
        self._lookup, self._commit = lookup, commit

    def stored_identities(self, table, vins, vin_index, seq):
        found = self._lookup.stored_identities(table, vins, vin_index, seq)
        if self._commit is not None:
            commit, self._commit = self._commit, None
            commit()
        return found

    def holds_rows(self, table):
        return self._lookup.holds_rows(table)


def test_a_batch_committing_during_the_next_lookup_is_not_written_twice(store, lookup):
    vin = "SMXPPLN0000000005"
    batch = [speed_message(vin, seq) for seq in (1, 2)]
    racing = _CommitsFirst(lookup, None)
    pipeline = Pipeline(store, SIGNALS, EVENTS, Metrics.create(CollectorRegistry()), lookup=racing)
    first = pipeline.prepare(*_raw(batch), now_ms())
    outcomes = []
    racing._commit = lambda: outcomes.append(pipeline.commit(first))  # N stored and released mid-lookup
    second = pipeline.prepare(*_raw(batch), now_ms())
    outcomes.append(pipeline.commit(second))
    assert [(o.stored, o.duplicates) for o in outcomes] == [(2, 0), (0, 2)]
    assert store.stats()["samples"] == 20
