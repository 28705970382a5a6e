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

from tests.helpers import SIGNALS, now_ms, simulate, speed_message
from vehicle_ingest.campaigns import Exposure, save_exposures
from vehicle_ingest.catalog import load_event_catalog
from vehicle_ingest.cdp import Deliverer, Outbox, sink_from_url
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.errors import UnknownErasureTargetError
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.owners import Ownership, save_registry
from vehicle_ingest.pipeline import Pipeline, PipelinePolicy
from vehicle_ingest.privacy import (
    ERASE_DERIVED,
    ERASE_PLAN,
    ErasureTarget,
    erase,
    location_retention_days,
    location_signal_ids,
    set_location_retention,
)
from vehicle_ingest.simulators.fleet import FleetSpec, simulate_fleet
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


def _ingestor(store: Store) -> Pipeline:
    policy = PipelinePolicy(skew=SkewPolicy(max_past_ms=200 * DAY))
    return Pipeline(store, SIGNALS, EVENTS, Metrics.create(CollectorRegistry()), policy)


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
    """Every table of the migrations that stores rows with a vin, owner_id or message_id column is erased
    (Null tables store none: their views write the tables erased)."""
    rows = store.rows(
        "SELECT DISTINCT c.table FROM system.columns AS c JOIN system.tables AS t"
        " ON c.database = t.database AND c.table = t.name"
        " WHERE c.database = currentDatabase() AND c.name IN ('vin', 'owner_id', 'message_id')"
        " AND t.engine NOT IN ('MaterializedView', 'Null')"
    )
    # owner_features: derived by the tag engine (absent until its first run), erased as ERASE_DERIVED.
    assert {r[0] for r in rows} - set(ERASE_DERIVED) == set(ERASE_PLAN)


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
    owners = store.rows("SELECT owner_id, min(message_id) FROM tag_history GROUP BY owner_id")
    for owner, message_id in owners:
        quarantine.add("segment:http://cdp.test", message_id, "400", f"bad traits for {owner}")
    # Every owner was reached by a campaign (the marketing side's exposures, keyed by owner id).
    reached = [Exposure(f"x-{o}", o, "voice_tutorial", "", "Campaign Exposed", "segment", end) for o, _ in owners]
    save_exposures(store, reached)


# The target's rows, found without erase's own machinery (erase_targets): a test of it must not trust it.
_OF_TARGET = {
    "signals": "vin IN %(vins)s",
    "events": "vin IN %(vins)s",
    "can_signals": "vin IN %(vins)s",
    "dead_letters": "vin IN %(vins)s OR splitByChar('/', topic)[3] IN %(vins)s",
    "latest_signals": "vin IN %(vins)s",
    "daily_activity": "vin IN %(vins)s",
    "trips": "vin IN %(vins)s",
    "cockpit_usage": "vin IN %(vins)s",
    "cdp_deliveries": "message_id IN (SELECT message_id FROM tag_history WHERE owner_id = %(owner)s)",
    "cdp_quarantine": "message_id IN (SELECT message_id FROM tag_history WHERE owner_id = %(owner)s)",
    "tag_history": "owner_id = %(owner)s",
    "exposures": "owner_id = %(owner)s",
    "ownership": "vin IN %(vins)s OR owner_id = %(owner)s",
}


def _vins_of(store: Store, owner: str) -> list[str]:
    return [r[0] for r in store.rows("SELECT DISTINCT vin FROM ownership WHERE owner_id = %(o)s", {"o": owner})]


def _rows_of(store: Store, owner: str = "", vins: list[str] | None = None) -> dict[str, int]:
    params = {"vins": vins or _vins_of(store, owner), "owner": owner}
    return {t: store.rows(f"SELECT count() FROM {t} WHERE {c}", params)[0][0] for t, c in _OF_TARGET.items()}


def _totals(store: Store) -> dict[str, int]:
    return {t: store.rows(f"SELECT count() FROM {t}")[0][0] for t in ERASE_PLAN}


def _store_dir(store: Store) -> Path:
    return Path(store.dsn.removeprefix("chdb://"))


def _files_naming(store: Store, identifier: str) -> list[str]:
    """Every file under the store's directory whose bytes contain `identifier` (compressed data hides it)."""
    needle = identifier.encode()
    root = _store_dir(store)
    return sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file() and needle in f.read_bytes())


def _part_dirs_holding(store: Store, owner: str, vins: list[str]) -> list[Path]:
    """The directories of the active parts holding the target's rows, and of every inactive part."""
    params = {"vins": vins, "owner": owner}
    dirs = []
    for table, condition in _OF_TARGET.items():
        holding = [r[0] for r in store.rows(f"SELECT DISTINCT _part FROM {table} WHERE {condition}", params)]
        dirs += [
            Path(r[0])
            for r in store.rows(
                "SELECT path FROM system.parts WHERE database = currentDatabase() AND table = %(t)s"
                " AND (NOT active OR name IN %(parts)s)",
                {"t": table, "parts": holding or [""]},
            )
        ]
    return dirs


def _assert_no_trace(store: Store, identifiers: list[str], part_dirs: list[Path]) -> None:
    """Nothing of the target left: not in a mutation's text, not in any file, not in any part on disk."""
    for identifier in identifiers:
        named = "SELECT count() FROM system.mutations WHERE position(command, %(i)s) > 0"
        assert store.rows(named, {"i": identifier}) == [(0,)], "system.mutations names the target"
        assert _files_naming(store, identifier) == []
    assert [d for d in part_dirs if d.exists()] == [], "parts that held the rows are still on disk"
    assert store.rows("SELECT count() FROM erase_targets") == [(0,)]


def test_erase_owner_removes_their_rows_everywhere_and_leaves_no_trace(store, tmp_path):
    _truncate_all(store)
    _fleet_loaded(store, tmp_path)
    owners = [r[0] for r in store.rows("SELECT owner_id FROM tag_history GROUP BY owner_id ORDER BY count() DESC")]
    victim, others = owners[0], owners[1:]
    vins = _vins_of(store, victim)
    before = _rows_of(store, victim)
    assert all(before.values()), f"the chosen owner must have rows in every table: {before}"
    others_before = {o: _rows_of(store, o) for o in others}
    totals = _totals(store)
    features = store.rows("SELECT count() FROM owner_features WHERE owner_id = %(o)s", {"o": victim})
    assert features == [(1,)]
    part_dirs = _part_dirs_holding(store, victim, vins)
    assert part_dirs and all(d.is_dir() for d in part_dirs)
    assert all(_files_naming(store, v) for v in vins), "the scan must see a stored VIN (else it proves nothing)"

    found = erase(store, ErasureTarget(owner=victim))

    assert found == before
    assert set(_rows_of(store, victim, vins).values()) == {0}
    assert store.rows("SELECT count() FROM owner_features WHERE owner_id = %(o)s", {"o": victim}) == [(0,)]
    assert {o: _rows_of(store, o) for o in others} == others_before
    assert _totals(store) == {t: totals[t] - before[t] for t in ERASE_PLAN}
    _assert_no_trace(store, [victim, *vins], part_dirs)
    # Each deletion read the targets through erase_targets: 12 tables and owner_features.
    via_targets = "SELECT count() FROM system.mutations WHERE position(command, 'erase_targets') > 0"
    assert store.rows(via_targets) == [(len(ERASE_PLAN) + 1,)]


def test_erase_vin_removes_the_vehicle_but_not_the_owner_tags_and_leaves_no_trace(store, tmp_path):
    _truncate_all(store)
    _fleet_loaded(store, tmp_path)
    vin, owner = store.rows("SELECT vin, owner_id FROM ownership ORDER BY vin LIMIT 1")[0]
    tags_before = store.rows("SELECT count() FROM tag_history WHERE owner_id = %(o)s", {"o": owner})
    before = _rows_of(store, vins=[vin])
    part_dirs = _part_dirs_holding(store, "", [vin])
    assert _files_naming(store, vin), "the scan must see the stored VIN (else it proves nothing)"

    found = erase(store, ErasureTarget(vin=vin))

    assert found == before
    assert found["signals"] > 0 and found["tag_history"] == found["cdp_deliveries"] == 0
    assert set(_rows_of(store, vins=[vin]).values()) == {0}
    assert store.rows("SELECT count() FROM tag_history WHERE owner_id = %(o)s", {"o": owner}) == tags_before
    _assert_no_trace(store, [vin], part_dirs)


def _dead_letter_without_vin(store: Store) -> None:
    _ingestor(store).ingest(["vi/junk"], [b"\xc1"], now_ms())
    assert store.rows("SELECT vin, topic, reason FROM dead_letters") == [("", "vi/junk", "malformed")]


def test_erasing_an_unknown_owner_or_vin_deletes_nothing_and_says_so(store):
    """An owner without ownership rows used to search VIN "" and delete the undecodable dead letters."""
    _truncate_all(store)
    _dead_letter_without_vin(store)
    m = speed_message("SMXKN0WNVEH1CLE01", 1)
    _ingestor(store).ingest([m.topic], [m.payload], now_ms())
    save_registry(store, [Ownership("SMXKN0WNVEH1CLE01", "owner-known", now_ms() - DAY)])
    totals, mutations = _totals(store), store.rows("SELECT count() FROM system.mutations")
    unknown = {
        ErasureTarget(owner="owner-nobody"): "nothing to erase: the store holds no row of this owner"
        " (no ownership row, no tag history)",
        ErasureTarget(vin="SMXNEVERSEEN00001"): "nothing to erase: the store holds no row of this VIN",
    }
    for target, message in unknown.items():
        for dry_run in (False, True):
            with pytest.raises(UnknownErasureTargetError) as refused:
                erase(store, target, dry_run=dry_run)
            assert str(refused.value) == message
    assert _totals(store) == totals
    assert store.rows("SELECT vin, topic FROM dead_letters") == [("", "vi/junk")]
    assert store.rows("SELECT count() FROM system.mutations") == mutations, "no deletion was even issued"
    assert store.rows("SELECT count() FROM erase_targets") == [(0,)]


def test_dry_run_reports_the_rows_and_deletes_nothing(store):
    _truncate_all(store)
    _dead_letter_without_vin(store)
    m = speed_message("SMXKN0WNVEH1CLE01", 1)
    _ingestor(store).ingest([m.topic], [m.payload], now_ms())
    save_registry(store, [Ownership("SMXKN0WNVEH1CLE01", "owner-known", now_ms() - DAY)])
    totals, mutations = _totals(store), store.rows("SELECT count() FROM system.mutations")
    expected = dict.fromkeys(ERASE_PLAN, 0) | {"signals": 10, "latest_signals": 1, "daily_activity": 1, "ownership": 1}
    assert erase(store, ErasureTarget(owner="owner-known"), dry_run=True) == expected
    assert _totals(store) == totals
    assert store.rows("SELECT count() FROM system.mutations") == mutations
    assert erase(store, ErasureTarget(owner="owner-known")) == expected
    assert _totals(store) == {t: totals[t] - expected[t] for t in ERASE_PLAN}
    assert store.rows("SELECT vin, topic FROM dead_letters") == [("", "vi/junk")]


def test_a_tag_cycle_runs_and_erase_works_with_an_overlong_owner_id_in_the_registry(store):
    """300,000 characters: "Max query size exceeded" stopped every tag cycle when ids were formatted into SQL."""
    _truncate_all(store)
    overlong, usual, since = "x" * 300_000, "owner-usual", now_ms() - 40 * DAY
    # save_registry stores what it is given: the registry of an older version, without the import's limit.
    save_registry(
        store, [Ownership("SMXL0NG0WNER00001", overlong, since), Ownership("SMXUSUA10WNER0001", usual, since)]
    )

    report = TagCycle(store, SIGNALS, EVENTS, load_tag_definitions()).run(now_ms())

    changes = {o: [] for o in (overlong, usual)}
    for owner, tag, traits in store.rows("SELECT owner_id, tag, traits FROM tag_history ORDER BY tag"):
        changes[owner].append((tag, json.loads(traits)))
    tags = [t for t, _ in changes[usual]]
    assert tags and [t for t, _ in changes[overlong]] == tags
    # Its evidence and traits were found too (by digest): the profile lists every tag of the owner.
    assert all(traits["tags"] == tags and traits["tag_count"] == len(tags) for _, traits in changes[overlong])
    assert report["tags"] == {"owners": 2, "changes": 2 * len(tags), "added": 2 * len(tags), "removed": 0}

    found = erase(store, ErasureTarget(owner=overlong))
    assert found == dict.fromkeys(ERASE_PLAN, 0) | {"tag_history": len(tags), "ownership": 1}
    named = "SELECT count() FROM system.mutations WHERE position(command, %(i)s) > 0"
    assert store.rows(named, {"i": overlong[:1000]}) == [(0,)]


@pytest.mark.integration
def test_erase_through_a_running_gateway(broker, rig, tmp_path):
    gw = rig.gateway(broker.url, "--tags-interval-s", "0")
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

    cli = [sys.executable, "-m", "vehicle_ingest.gateway.cli", "erase", "--owner", owner, "--gateway", gw.url]
    result = json.loads(subprocess.run(cli, check=True, capture_output=True, text=True).stdout)
    assert result["erased"]["signals"] > 0 and result["erased"]["ownership"] > 0
    for table in ("signals", "events", "latest_signals", "daily_activity", "trips", "cockpit_usage", "ownership"):
        assert gw.sql(f"SELECT count() FROM {table} WHERE vin = '{vin}'") == [[0]], table
    assert gw.sql(f"SELECT count() FROM tag_history WHERE owner_id = '{owner}'") == [[0]]
    assert gw.sql(f"SELECT count() FROM signals WHERE vin != '{vin}'")[0][0] == others
