"""The cluster DDL (`schemas/clickhouse/cluster/`) checked by the embedded engine against the single-node schema.

chDB runs no distributed DDL ("Replicated DDL queries are disabled") and has no Keeper, so the
cluster files cannot be applied as written. What is checked instead:

1. Every cluster statement, exactly as written, parses (`formatQuery`) and is idempotent distributed
   DDL: `IF NOT EXISTS ... ON CLUSTER '{cluster}'`, Keeper path `/clickhouse/tables/{shard}/{database}/<table>`
   and replica `{replica}`, Distributed tables over `<name>_local`, views from and to local tables.
2. The same statements, rewritten to what one node runs (ON CLUSTER dropped, `Replicated*MergeTree(path,
   replica, args...)` -> `*MergeTree(args...)`), are created for real in chDB, configured with the
   macros and a one-shard cluster `{cluster}` whose replica is this process, so the Distributed tables
   exist too. Their columns (name, type, default, codec), engines with arguments, keys, settings,
   projections and indexes must equal those the single-node migrations create: the schemas cannot drift.
3. The gateway's own code (Store.migrate, Pipeline, Store.stored_identities) runs unchanged against the
   Distributed tables: one message's rows are one part on its shard, the identity lookup reads the
   `by_message` projection through the Distributed table, redelivery is caught, the views aggregate.

Not checked here (needs a real cluster): Keeper paths being unique per table, replication itself, two
or more shards, ON CLUSTER execution on remote nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect
import pytest
from prometheus_client import CollectorRegistry

from tests.helpers import now_ms, raw_message, speed_message
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.cdp import Outbox
from vehicle_ingest.errors import StoreError
from vehicle_ingest.features import FeatureJobs
from vehicle_ingest.gateway.broker import free_port
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.owners import save_registry
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.privacy import ERASE_PLAN, ErasureTarget, erase
from vehicle_ingest.simulators.fleet import FleetSpec, simulate_fleet
from vehicle_ingest.simulators.truth import truth_tags
from vehicle_ingest.storage import Store, default_migrations_dir, split_statements
from vehicle_ingest.tags import TagEngine, load_tag_definitions

SINGLE_DIR = default_migrations_dir()
CLUSTER_DIR = SINGLE_DIR / "cluster"
CLUSTER = "vi_test"
DAY_MS = 86_400_000

_ON_CLUSTER = " ON CLUSTER '{cluster}'"
_HEAD = re.compile(r"CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+) ON CLUSTER '\{cluster\}'\s")
_ALTER = re.compile(r"ALTER TABLE (\w+) ON CLUSTER '\{cluster\}'\s")
_DROP_VIEW = re.compile(r"DROP VIEW IF EXISTS (\w+) ON CLUSTER '\{cluster\}' SYNC$")
_REPLICATED = re.compile(
    r"Replicated(\w*MergeTree)\('/clickhouse/tables/\{shard\}/\{database\}/(\w+)', '\{replica\}'(, )?"
)
_DISTRIBUTED = re.compile(r"Distributed\('\{cluster\}', currentDatabase\(\), (\w+), (.+)\)\s*$")
_SHARD_KEY = re.compile(r"Distributed\('\{cluster\}', '(\w+)', '(\w+)', (.+)\)$")


def _statements(folder: Path) -> list[tuple[str, str]]:
    return [(p.name, s) for p in sorted(folder.glob("*.sql")) for s in split_statements(p.read_text())]


CLUSTER_STATEMENTS = _statements(CLUSTER_DIR)


def _statement_id(item: tuple[str, str]) -> str:
    head, alter, drop = _HEAD.match(item[1]), _ALTER.match(item[1]), _DROP_VIEW.match(item[1])
    name = head[2] if head else f"alter {alter[1]}" if alter else f"drop {drop[1]}" if drop else item[1][:40]
    return f"{item[0]}:{name}"


def one_node(statement: str) -> str:
    """What one node of the cluster runs: no ON CLUSTER, no Keeper path (chDB has no Keeper)."""
    return _REPLICATED.sub(lambda m: f"{m[1]}(", statement.replace(_ON_CLUSTER, "")).replace("MergeTree()", "MergeTree")


@dataclass(frozen=True)
class Table:
    engine: str
    engine_full: str
    create: str
    columns: tuple[tuple[str, str, str, str, str], ...]  # name, type, default kind, default expression, codec
    projections: tuple[tuple[str, str], ...]
    indexes: tuple[tuple[str, str, str, int], ...]


def snapshot(store: Store) -> dict[str, Table]:
    """Every table and view of the current database, as the engine resolved it."""
    here = "database = currentDatabase()"
    columns: dict[str, list] = {}
    for table, *col in store.rows(
        "SELECT table, name, type, default_kind, default_expression, compression_codec"
        f" FROM system.columns WHERE {here} ORDER BY table, position"
    ):
        columns.setdefault(table, []).append(tuple(col))
    projections: dict[str, list] = {}
    for table, *p in store.rows(f"SELECT table, name, query FROM system.projections WHERE {here} ORDER BY name"):
        projections.setdefault(table, []).append(tuple(p))
    indexes: dict[str, list] = {}
    for table, *i in store.rows(
        f"SELECT table, name, type_full, expr, granularity FROM system.data_skipping_indices WHERE {here} ORDER BY name"
    ):
        indexes.setdefault(table, []).append(tuple(i))
    return {
        name: Table(
            engine,
            engine_full,
            create,
            tuple(columns.get(name, ())),
            tuple(projections.get(name, ())),
            tuple(indexes.get(name, ())),
        )
        for name, engine, engine_full, create in store.rows(
            f"SELECT name, engine, engine_full, create_table_query FROM system.tables WHERE {here}"
        )
    }


@dataclass(frozen=True)
class Schemas:
    store: Store
    single: dict[str, Table]
    cluster: dict[str, Table]
    cluster_after_single_migration: dict[str, Table]
    single_applied_on_cluster: list[str]


def _config(path: Path) -> Path:
    """Macros and a one-shard cluster whose only replica is this process (its own tcp_port: no network)."""
    port = free_port()
    path.write_text(
        f"""<clickhouse>
  <tcp_port>{port}</tcp_port>
  <macros><cluster>{CLUSTER}</cluster><shard>01</shard><replica>r1</replica></macros>
  <remote_servers><{CLUSTER}><shard><internal_replication>true</internal_replication>
    <replica><host>localhost</host><port>{port}</port></replica>
  </shard></{CLUSTER}></remote_servers>
</clickhouse>
"""
    )
    return path


def _drop_everything(store: Store) -> None:
    names = store.rows(
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY engine != 'MaterializedView'"
    )
    for (name,) in names:
        store.command(f"DROP TABLE {name} SYNC")


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Schemas]:
    root = tmp_path_factory.mktemp("cluster_ddl")
    dsn = f"chdb://{root / 'store'}"
    client = clickhouse_connect.get_client(
        dsn=dsn,
        # The user-profile settings the cluster README prescribes for the gateway.
        chdb_options={"config-file": str(_config(root / "config.xml")), "distributed_foreground_insert": 1},
        settings={"async_insert": 0},
    )
    store = Store(client, dsn)
    try:
        store.migrate()
        single = snapshot(store)
        _drop_everything(store)
        local_dir = root / "one_node"
        local_dir.mkdir()
        for path in sorted(CLUSTER_DIR.glob("*.sql")):
            text = ";\n\n".join(one_node(s) for s in split_statements(path.read_text()))
            (local_dir / path.name).write_text(text + ";\n")
        store.migrate(local_dir)
        cluster = snapshot(store)
        # A gateway started against the cluster runs the single-node migrations: they must change nothing.
        # Every file is skipped by name there, as the cluster counterpart of the same name is recorded; the
        # CREATE and DROP statements, run again in order, must also leave it as it is. (The ALTERs of a
        # single-node file are its table properties: TTL, cleanup settings, projections; the cluster files
        # set their own on the local tables.)
        store.command("DROP TABLE schema_migrations SYNC")
        creating = root / "single_creating"
        creating.mkdir()
        for path in sorted(SINGLE_DIR.glob("*.sql")):
            statements = split_statements(path.read_text())
            if creates := [s for s in statements if s.lstrip().upper().startswith(("CREATE", "DROP"))]:
                (creating / path.name).write_text(";\n\n".join(creates) + ";\n")
        applied = store.migrate(creating)
        yield Schemas(store, single, cluster, snapshot(store), applied)
    finally:
        store.close()


# Scratch tables that are node-local on the cluster too (Memory: nothing on disk, nothing in Keeper).
NODE_LOCAL = {"erase_targets"}
# Table settings only the single-node schema sets (0007_erase.sql: on Replicated tables a cleanup round
# also reads and trims Keeper, and erase does not run on the cluster schema).
SINGLE_NODE_SETTINGS = {"cleanup_delay_period", "max_cleanup_delay_period", "cleanup_delay_period_random_add"}


def _data_tables(single: dict[str, Table]) -> list[str]:
    return sorted(
        n
        for n, t in single.items()
        if t.engine != "MaterializedView" and n != "schema_migrations" and n not in NODE_LOCAL
    )


def _without_single_node_settings(engine_full: str) -> str:
    head, _, settings = engine_full.partition(" SETTINGS ")
    kept = [s for s in settings.split(", ") if s and s.split(" = ")[0] not in SINGLE_NODE_SETTINGS]
    return head + (" SETTINGS " + ", ".join(kept) if kept else "")


# -- 1. as written ------------------------------------------------------------------------------


def test_every_single_node_migration_has_a_cluster_counterpart():
    single = sorted(p.name for p in SINGLE_DIR.glob("*.sql"))
    assert single, "no single-node migrations found"
    assert sorted(p.name for p in CLUSTER_DIR.glob("*.sql")) == single


@pytest.mark.parametrize("item", CLUSTER_STATEMENTS, ids=_statement_id)
def test_statement_parses_and_is_distributed_ddl(schemas: Schemas, item: tuple[str, str]):
    _, statement = item
    formatted = schemas.store.rows("SELECT formatQuery(%(q)s)", {"q": statement})[0][0]
    assert "ON CLUSTER `{cluster}`" in formatted
    if alter := _ALTER.match(statement):  # table properties (TTL) belong to the tables holding the data
        if not alter[1].endswith("_local"):  # a Distributed table holds no data, only the columns of its local one
            local = statement.replace(f"ALTER TABLE {alter[1]} ", f"ALTER TABLE {alter[1]}_local ", 1)
            assert " ADD COLUMN " in statement and local in [s for _, s in CLUSTER_STATEMENTS], statement
        return
    if drop := _DROP_VIEW.match(statement):  # a view an earlier file created, gone on every node
        created = {h[2] for _, s in CLUSTER_STATEMENTS if (h := _HEAD.match(s)) and h[1] == "MATERIALIZED VIEW"}
        assert drop[1] in created, f"DROP VIEW {drop[1]}: no cluster file creates it"
        return
    head = _HEAD.match(statement)
    assert head, (
        f"expected CREATE TABLE|MATERIALIZED VIEW IF NOT EXISTS <name> ON CLUSTER '{{cluster}}': {statement[:80]}"
    )
    kind, name = head[1], head[2]
    if kind == "MATERIALIZED VIEW":
        assert re.search(r"\bTO \w+_local\b", statement) and re.search(r"\bFROM \w+_local\b", statement)
    elif name in NODE_LOCAL:
        assert re.search(r"\bENGINE = Memory\s*$", statement), f"{name}: a node-local scratch table is Memory"
    elif name.endswith("_local") and re.search(r"\bENGINE = Null\s*$", statement):
        pass  # a table that stores nothing (its views do): no Keeper path
    elif name.endswith("_local"):
        engine = _REPLICATED.search(statement)
        assert engine, f"{name}: expected Replicated*MergeTree('/clickhouse/tables/{{shard}}/{{database}}/{name}', ...)"
        assert engine[2] == name, f"{name}: Keeper path names another table ({engine[2]})"
    else:
        engine = _DISTRIBUTED.search(statement)
        assert engine, f"{name}: expected Distributed('{{cluster}}', currentDatabase(), {name}_local, key)"
        assert engine[1] == f"{name}_local"
        assert f"AS {name}_local" in statement


# -- 2. same schema as the single node ------------------------------------------------------------


def test_local_tables_equal_the_single_node_tables(schemas: Schemas):
    for name in _data_tables(schemas.single):
        want, got = schemas.single[name], schemas.cluster.get(f"{name}_local")
        assert got is not None, f"no {name}_local in the cluster schema"
        assert got.columns == want.columns, name
        # engine arguments, partition, order, settings
        assert got.engine_full == _without_single_node_settings(want.engine_full), name
        assert got.projections == want.projections, name
        assert got.indexes == want.indexes, name


def test_the_single_node_schema_lowers_the_cleanup_delay_of_every_erased_table(schemas: Schemas):
    lowered = {n for n, t in schemas.single.items() if _without_single_node_settings(t.engine_full) != t.engine_full}
    assert lowered == set(ERASE_PLAN)
    assert "cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0" in (
        schemas.single["signals"].engine_full
    )


def test_node_local_tables_equal_the_single_node_tables(schemas: Schemas):
    for name in NODE_LOCAL:
        want, got = schemas.single[name], schemas.cluster.get(name)
        assert got is not None, f"no {name} in the cluster schema"
        assert (got.engine, got.engine_full, got.columns) == ("Memory", "Memory", want.columns)
        assert want.engine_full == "Memory"


def test_distributed_tables_keep_the_single_node_names_and_columns(schemas: Schemas):
    for name in _data_tables(schemas.single):
        got = schemas.cluster.get(name)
        assert got is not None and got.engine == "Distributed", f"{name} is not a Distributed table"
        key = _SHARD_KEY.match(got.engine_full)
        assert key and key[2] == f"{name}_local", got.engine_full
        assert [c[:4] for c in got.columns] == [c[:4] for c in schemas.single[name].columns], name


def _sharding_key(table: Table) -> str:
    key = _SHARD_KEY.match(table.engine_full)
    assert key, table.engine_full
    return key[3]


def test_sharding_keeps_a_vehicle_and_a_replacing_key_on_one_shard(schemas: Schemas):
    for name in _data_tables(schemas.single):
        key = _sharding_key(schemas.cluster[name])
        columns = {c[0] for c in schemas.single[name].columns}
        if "vin" in columns and name != "dead_letters":
            # A message's rows, and every vehicle-keyed feature row, on the shard of its VIN.
            assert key == "cityHash64(vin)", name
        if schemas.cluster[f"{name}_local"].engine == "Null":
            continue  # stores nothing: no replacing key to keep together (its views' targets are checked)
        sort_key = schemas.cluster[f"{name}_local"].create.split(" ORDER BY ")[1]
        used = set(re.findall(r"\w+", key)) & columns
        assert used and all(re.search(rf"\b{c}\b", sort_key) for c in used), f"{name}: {key} vs ORDER BY {sort_key}"
    # The outbox's NOT IN (cdp_deliveries) may run shard-local: a change and its deliveries co-located.
    assert _sharding_key(schemas.cluster["tag_history"]) == _sharding_key(schemas.cluster["cdp_deliveries"])
    assert _sharding_key(schemas.cluster["tag_history"]) == _sharding_key(schemas.cluster["cdp_quarantine"])


def test_views_aggregate_the_local_tables_with_the_single_node_query(schemas: Schemas):
    views = [n for n, t in schemas.single.items() if t.engine == "MaterializedView"]
    assert views
    for name in views:
        got = schemas.cluster.get(name)
        assert got is not None and got.engine == "MaterializedView", name
        assert re.search(r" TO \w+\.\w+_local ", got.create) and re.search(r" FROM \w+\.\w+_local\b", got.create)
        assert got.create.replace("_local", "") == schemas.single[name].create


def test_the_single_node_migration_is_a_no_op_on_the_cluster_schema(schemas: Schemas):
    creating = [
        p.name
        for p in sorted(SINGLE_DIR.glob("*.sql"))
        if any(s.lstrip().upper().startswith(("CREATE", "DROP")) for s in split_statements(p.read_text()))
    ]
    assert schemas.single_applied_on_cluster == creating
    assert schemas.cluster_after_single_migration.keys() - {"schema_migrations"} == schemas.cluster.keys() - {
        "schema_migrations"
    }
    for name, table in schemas.cluster.items():
        if name != "schema_migrations":
            assert schemas.cluster_after_single_migration[name] == table, name


# -- 3. the gateway's code through the Distributed tables -------------------------------------------


@pytest.fixture
def ingestor(schemas: Schemas) -> Pipeline:
    for name in ("signals_local", "events_local", "dead_letters_local", "latest_signals_local", "daily_activity_local"):
        schemas.store.command(f"TRUNCATE TABLE {name}")
    return Pipeline(schemas.store, load_signal_catalog(), load_event_catalog(), Metrics.create(CollectorRegistry()))


def test_a_batch_is_stored_once_through_the_distributed_tables(schemas: Schemas, ingestor: Pipeline):
    store = schemas.store
    batch = [speed_message(f"SMXCLUSTER000000{v}", seq, n=5) for v in range(1, 4) for seq in (1, 2)]
    first = ingestor.ingest([m.topic for m in batch], [m.payload for m in batch], now_ms())
    assert (first.stored, first.duplicates, first.samples) == (6, 0, 30)
    # Readable as soon as the insert returned (foreground insert), all in ONE part of the shard's local table.
    assert store.rows("SELECT count(), uniqExact(_part) FROM signals_local") == [(30, 1)]
    # A redelivered subset, re-batched with a new message: the lookup through `signals` catches it.
    again = [*batch[3:], speed_message("SMXCLUSTER0000001", 3, n=5)]
    second = ingestor.ingest([m.topic for m in again], [m.payload for m in again], now_ms())
    assert (second.stored, second.duplicates) == (1, 3)
    stats = store.stats()
    assert (stats["messages"], stats["samples"], stats["vehicles"]) == (7, 35, 3)
    # The views wrote the local aggregate tables; read back through their Distributed tables.
    per_vin = "SELECT vin, uniqExactMerge(messages) AS m FROM daily_activity GROUP BY vin"
    assert store.rows(f"SELECT sum(m) FROM ({per_vin})") == [(7,)]
    assert store.rows("SELECT count() FROM (SELECT vin, signal_id FROM latest_signals GROUP BY vin, signal_id)") == [
        (3,)
    ]


def test_rejected_message_redelivered_collapses(schemas: Schemas, ingestor: Pipeline):
    bad = raw_message("vi/v1/SMXCLUSTER0000009/signals", b"\xc1 not msgpack")
    for _ in range(2):
        ingestor.ingest([bad.topic], [bad.payload], now_ms())
    assert schemas.store.stats()["rejected"] == 1


def test_identity_lookup_reads_the_projection_through_the_distributed_table(schemas: Schemas, ingestor: Pipeline):
    """With a vehicle's rows over many granules, the lookup reads the `by_message` projection, not the rows."""
    schemas.store.command(
        "INSERT INTO signals (vin, seq, signal_id, ts, value, received_at) SELECT 'SMXCLUSTER0000077',"
        " intDiv(number, 10), number % 10, fromUnixTimestamp64Milli(toInt64(1.7e12) + number), 1.0, now64(3)"
        " FROM numbers(100000)"
    )
    # The shape of Store.stored_identities' lookup.
    plan = schemas.store.rows(
        "EXPLAIN projections = 1 SELECT vin, seq, count(), toInt64(toUnixTimestamp64Milli(min(ts))) FROM signals"
        " WHERE (vin, seq) IN (('SMXCLUSTER0000077', 5)) GROUP BY vin, seq"
    )
    assert any("ReadFromMergeTree (by_message)" in line for (line,) in plan), plan


def test_features_and_tags_run_unchanged_through_the_distributed_tables(schemas: Schemas, ingestor: Pipeline):
    """Trips, cockpit usage and owner tags computed through the Distributed tables equal the simulated truth."""
    store = schemas.store
    for name in ("trips", "cockpit_usage", "job_state", "ownership", "tag_history", "cdp_deliveries"):
        store.command(f"TRUNCATE TABLE {name}_local")
    end = now_ms()
    signals, events = load_signal_catalog(), load_event_catalog()
    spec = FleetSpec(6, end - 30 * DAY_MS, 30 * 86400.0, sample_hz=0.05, seed=11, message_s=600)
    sim = simulate_fleet(spec, signals, events)
    save_registry(store, sim.ownership)
    for i in range(0, len(sim.messages), 3000):
        chunk = sim.messages[i : i + 3000]
        ingestor.ingest([m.topic for m in chunk], [m.payload for m in chunk], end)
    FeatureJobs(store, signals, events).run(end)
    FeatureJobs(store, signals, events).run(end)  # a re-run replaces rows with the same ones
    definitions = load_tag_definitions()
    engine = TagEngine(store, signals, definitions, Outbox(store))
    assert engine.current_tags(end) == truth_tags(sim, definitions, end)
    first, second = engine.run(end), engine.run(end)
    assert first.changes > 0 and second.changes == 0
    assert Outbox(store).depth("any-sink") == first.changes


def test_erase_refuses_the_cluster_schema_before_deleting_anything(schemas: Schemas, ingestor: Pipeline):
    """Distributed tables take no ALTER ... DELETE: erase says so and touches nothing (docs/SECURITY.md)."""
    m = speed_message("SMXCLUSTERERASE01", 1)
    ingestor.ingest([m.topic], [m.payload], now_ms())
    with pytest.raises(StoreError) as refused:
        erase(schemas.store, ErasureTarget(vin="SMXCLUSTERERASE01"))
    assert str(refused.value) == (
        "erase runs on one node's tables (chDB or a single server); can_signals and 12 more are Distributed"
        " tables of the cluster schema, which do not support mutations (docs/SECURITY.md)"
    )
    assert schemas.store.rows("SELECT count() FROM signals WHERE vin = 'SMXCLUSTERERASE01'") == [(10,)]
    assert schemas.store.rows("SELECT count() FROM erase_targets") == [(0,)]
