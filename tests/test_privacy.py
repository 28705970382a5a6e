"""Privacy: raw location expires (TTL), and `erase` removes an owner's or a vehicle's data everywhere."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gateway.config import GatewayConfig
from simulators.fleet import FleetSpec, simulate_fleet
from tests.helpers import SIGNALS, now_ms, simulate, speed_message
from vehicle_ingest.catalog import load_event_catalog
from vehicle_ingest.cdp import Deliverer, Outbox, sink_from_url
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.ingest import Ingestor, IngestPolicy
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.owners import save_registry
from vehicle_ingest.privacy import (
    ERASE_PLAN,
    ErasureTarget,
    erase,
    location_retention_days,
    location_signal_ids,
    set_location_retention,
)
from vehicle_ingest.storage import CanSignalRows, Store, default_migrations_dir
from vehicle_ingest.tags import TagCycle, load_tag_definitions
from vehicle_ingest.validate import SkewPolicy

EVENTS = load_event_catalog()
DAY = 86_400_000
LAT, LON = SIGNALS.by_path("Vehicle.CurrentLocation.Latitude"), SIGNALS.by_path("Vehicle.CurrentLocation.Longitude")
SPEED = SIGNALS.by_path("Vehicle.Speed")


def _truncate_all(store: Store) -> None:
    for table in [*ERASE_PLAN, "job_state"]:
        store.command(f"TRUNCATE TABLE {table}")


def _ingestor(store: Store) -> Ingestor:
    policy = IngestPolicy(skew=SkewPolicy(max_past_ms=200 * DAY))
    return Ingestor(store, SIGNALS, EVENTS, Metrics.create(CollectorRegistry()), policy)


# --- location TTL


def _position_message(vin: str, seq: int, age_days: int) -> tuple[str, bytes]:
    base = now_ms() - age_days * DAY
    ts = base + np.arange(5, dtype=np.int64) * 1000
    blocks = [
        SignalBlock(s.id, s.scale_exp, ts, np.full(5, 100 * (1 + i), np.int64)) for i, s in enumerate((LAT, LON, SPEED))
    ]
    return f"vi/v1/{vin}/signals", encode_signals(vin, seq, base, blocks)


def _count(store: Store, vin: str, table: str = "signals") -> dict[int, int]:
    return dict(store.rows(f"SELECT signal_id, count() FROM {table} WHERE vin = %(v)s GROUP BY signal_id", {"v": vin}))


def test_migration_names_the_catalog_location_signals():
    sql = (default_migrations_dir() / "0005_privacy.sql").read_text()
    lists = set(re.findall(r"signal_id IN \(([\d, ]+)\)", sql))
    assert lists == {", ".join(str(i) for i in location_signal_ids(SIGNALS))}
    assert location_signal_ids(SIGNALS) == (10, 11, 340, 341)


def test_raw_location_expires_and_other_signals_stay(store):
    _truncate_all(store)
    assert location_retention_days(store) == 120  # the migration's default
    ingestor = _ingestor(store)
    old, fresh = "SMXTTL0LDP0S00001", "SMXTTLFRESHP00001"
    ingestor.ingest(*map(list, zip(_position_message(old, 1, 150), strict=True)), now_ms())
    ingestor.ingest(*map(list, zip(_position_message(fresh, 1, 1), strict=True)), now_ms())
    store.command("OPTIMIZE TABLE signals FINAL")
    store.command("OPTIMIZE TABLE latest_signals FINAL")
    assert _count(store, old) == {SPEED.id: 5}, "150-day-old coordinates are gone, the speed stays"
    assert _count(store, fresh) == {LAT.id: 5, LON.id: 5, SPEED.id: 5}
    assert _count(store, old, "latest_signals") == {SPEED.id: 1}, "no last known position either"
    assert _count(store, fresh, "latest_signals") == {LAT.id: 1, LON.id: 1, SPEED.id: 1}


def test_retention_is_configurable_and_applies_to_rows_already_stored(store):
    _truncate_all(store)
    try:
        assert set_location_retention(store, 60, SIGNALS) is True
        assert set_location_retention(store, 60, SIGNALS) is False  # already so: no ALTER at every start
        vin = "SMXTTLRETAXN00001"
        _ingestor(store).ingest(*map(list, zip(_position_message(vin, 1, 40), strict=True)), now_ms())
        assert _count(store, vin) == {LAT.id: 5, LON.id: 5, SPEED.id: 5}, "40 days < 60: kept"
        assert set_location_retention(store, 30, SIGNALS) is True  # MODIFY TTL rewrites the stored parts
        store.command("OPTIMIZE TABLE signals FINAL")
        assert _count(store, vin) == {SPEED.id: 5}
        assert location_retention_days(store) == 30
    finally:
        set_location_retention(store, 120, SIGNALS)


def test_retention_must_outlast_the_accepted_past():
    """A message still accepted (max_past_s) must not lose rows to the TTL: its identity counts them."""
    problems = GatewayConfig(location_retention_days=60, max_past_s=90 * 86_400).problems()
    assert [e.key for e in problems] == ["location_retention_days"]
    assert "must exceed max_past_s" in problems[0].problem
    assert GatewayConfig().problems() == []


# --- erase


def test_erase_plan_covers_every_table_with_personal_keys(store):
    """Every stored table of the migrations with a vin, owner_id or message_id column is erased."""
    rows = store.rows(
        "SELECT DISTINCT c.table FROM system.columns AS c JOIN system.tables AS t"
        " ON c.database = t.database AND c.table = t.name"
        " WHERE c.database = currentDatabase() AND c.name IN ('vin', 'owner_id', 'message_id')"
        " AND t.engine != 'MaterializedView'"
    )
    assert {r[0] for r in rows} == set(ERASE_PLAN)


def _fleet_loaded(store: Store, tmp_path: Path) -> None:
    """A small fleet through every stage: rows, dead letters, features, tags, CDP deliveries."""
    end = now_ms()
    sim = simulate_fleet(
        FleetSpec(6, end - 30 * DAY, 30 * 86400.0, sample_hz=0.05, seed=11, message_s=600), SIGNALS, EVENTS
    )
    save_registry(store, sim.ownership)
    ingestor = _ingestor(store)
    for i in range(0, len(sim.messages), 3000):
        chunk = sim.messages[i : i + 3000]
        ingestor.ingest([m.topic for m in chunk], [m.payload for m in chunk], end)
    for o in sim.ownership:  # one dead letter per vehicle: a VIN that does not match the topic
        bad = speed_message(o.vin, 10**9, topic_vin=o.vin[:-1] + "Z")
        ingestor.ingest([f"vi/v1/{o.vin}/signals", bad.topic], [b"\xc1", bad.payload], end)
    for k, o in enumerate(sim.ownership):  # decoded CAN values no mapping covers, one per vehicle
        store.insert_can_signals(
            CanSignalRows([o.vin], np.zeros(1, np.int32), np.array([10**9 + 1], np.uint64), ["BODY.Wiper"],
                          np.zeros(1, np.int32), np.array([end - k], np.int64), np.ones(1), end)
        )  # fmt: skip
    TagCycle(store, SIGNALS, EVENTS, load_tag_definitions()).run(end)

    async def run_store(fn, *a):
        return fn(*a)

    sink = sink_from_url(f"file://{tmp_path / 'cdp.jsonl'}")
    asyncio.run(Deliverer(Outbox(store), [sink], CollectorRegistry(), run_store).deliver_once())
    quarantine = Outbox(store).quarantine  # one change per owner refused by another sink, with an answer
    for owner, message_id in store.rows("SELECT owner_id, min(message_id) FROM tag_history GROUP BY owner_id"):
        quarantine.add("segment:http://cdp.test", message_id, "400", f"bad traits for {owner}")


def _rows_of(store: Store, owner: str) -> dict[str, int]:
    vins = [r[0] for r in store.rows("SELECT DISTINCT vin FROM ownership WHERE owner_id = %(o)s", {"o": owner})]
    params = {"vins": vins or [""], "owner": owner}
    return {t: store.rows(f"SELECT count() FROM {t} WHERE {c}", params)[0][0] for t, c in ERASE_PLAN.items()}


def _totals(store: Store) -> dict[str, int]:
    return {t: store.rows(f"SELECT count() FROM {t}")[0][0] for t in ERASE_PLAN}


def test_erase_owner_removes_their_rows_everywhere_and_nothing_else(store, tmp_path):
    _truncate_all(store)
    _fleet_loaded(store, tmp_path)
    owners = [r[0] for r in store.rows("SELECT owner_id FROM tag_history GROUP BY owner_id ORDER BY count() DESC")]
    victim, others = owners[0], owners[1:]
    before = _rows_of(store, victim)
    assert all(before.values()), f"the chosen owner must have rows in every table: {before}"
    others_before = {o: _rows_of(store, o) for o in others}
    totals = _totals(store)

    found = erase(store, ErasureTarget(owner=victim))

    assert found == before
    assert set(_rows_of(store, victim).values()) == {0}
    assert {o: _rows_of(store, o) for o in others} == others_before
    assert _totals(store) == {t: totals[t] - before[t] for t in ERASE_PLAN}


def test_erase_vin_removes_the_vehicle_but_not_the_owner_tags(store, tmp_path):
    _truncate_all(store)
    _fleet_loaded(store, tmp_path)
    vin, owner = store.rows("SELECT vin, owner_id FROM ownership ORDER BY vin LIMIT 1")[0]
    tags_before = store.rows("SELECT count() FROM tag_history WHERE owner_id = %(o)s", {"o": owner})
    found = erase(store, ErasureTarget(vin=vin))
    assert found["signals"] > 0 and found["tag_history"] == 0
    for table, condition in ERASE_PLAN.items():
        if "%(vins)s" in condition:
            assert store.rows(f"SELECT count() FROM {table} WHERE {condition}", {"vins": [vin], "owner": ""}) == [(0,)]
    assert store.rows("SELECT count() FROM tag_history WHERE owner_id = %(o)s", {"o": owner}) == tags_before


@pytest.mark.integration
def test_erase_through_a_running_gateway(broker, start_gateway, tmp_path):
    gw = start_gateway(broker.url, "--tags-interval-s", "0")
    truth = simulate(
        broker.url,
        tmp_path / "truth.json",
        "--vehicles",
        "4",
        "--duration",
        str(5 * 86400),
        "--sample-hz",
        "0.05",
        "--message-s",
        "600",
        "--seed",
        "4",
        "--owners",
        str(tmp_path / "owners.csv"),
    )
    gw.post("/api/owners", (tmp_path / "owners.csv").read_bytes())
    gw.wait_stored(truth["messages"])
    gw.post("/api/tags/run", b"")
    owner, vin = gw.sql("SELECT owner_id, vin FROM ownership ORDER BY vin LIMIT 1")[0]
    others = gw.sql(f"SELECT count() FROM signals WHERE vin != '{vin}'")[0][0]
    assert gw.sql(f"SELECT count() FROM signals WHERE vin = '{vin}'")[0][0] > 0

    cli = [sys.executable, "-m", "gateway.cli", "erase", "--owner", owner, "--gateway", gw.url]
    result = json.loads(subprocess.run(cli, check=True, capture_output=True, text=True).stdout)
    assert result["erased"]["signals"] > 0 and result["erased"]["ownership"] > 0
    for table in ("signals", "events", "latest_signals", "daily_activity", "trips", "cockpit_usage", "ownership"):
        assert gw.sql(f"SELECT count() FROM {table} WHERE vin = '{vin}'") == [[0]], table
    assert gw.sql(f"SELECT count() FROM tag_history WHERE owner_id = '{owner}'") == [[0]]
    assert gw.sql(f"SELECT count() FROM signals WHERE vin != '{vin}'")[0][0] == others
