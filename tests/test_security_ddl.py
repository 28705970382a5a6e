"""The least-privilege DDL (schemas/clickhouse/security/gateway_role.sql) parses and fits the code.

chDB has no writable access storage (CREATE ROLE is refused), so the statements are
checked with ClickHouse's own parser (formatQuery) and the grants against the schema.
"""

from __future__ import annotations

import re
from collections import defaultdict

from vehicle_ingest.privacy import ERASE_PLAN
from vehicle_ingest.storage import default_migrations_dir, split_statements

DDL = default_migrations_dir() / "security" / "gateway_role.sql"
GRANT = re.compile(r"^GRANT (?P<privs>.+) ON vehicle_ingest\.(?P<table>\w+) TO vehicle_ingest_gateway$")
# Tables the gateway writes to (storage, owners, features, tags/CDP outbox, migrations bookkeeping).
WRITTEN = {
    "signals",
    "events",
    "can_signals",
    "dead_letters",
    "latest_signals_batch",
    "daily_activity_batch",
    "ownership",
    "trips",
    "cockpit_usage",
    "job_state",
    "tag_history",
    "cdp_deliveries",
    "cdp_quarantine",
    "exposures",
    "erase_targets",
    "schema_migrations",
}


def _formatted(store) -> list[str]:
    return [store.rows("SELECT formatQuery(%(q)s)", {"q": s})[0][0] for s in split_statements(DDL.read_text())]


def _gateway_grants(store) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = defaultdict(set)
    for statement in _formatted(store):
        match = GRANT.match(statement)
        if match:
            grants[match["table"]] |= {p.strip() for p in match["privs"].split(",")}
    return grants


def test_every_statement_parses(store):
    statements = split_statements(DDL.read_text())
    assert len(_formatted(store)) == len(statements) > 20


def test_gateway_reads_every_table_and_writes_only_where_the_code_does(store):
    grants = _gateway_grants(store)
    tables = {
        r[0]
        for r in store.rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine != 'MaterializedView'"
        )
    }
    assert set(grants) == tables
    assert all("SELECT" in privs for privs in grants.values())
    # Materialized views insert into their targets as the inserting user.
    assert {t for t, p in grants.items() if "INSERT" in p} == WRITTEN | {"latest_signals", "daily_activity"}


def test_gateway_alters_only_for_erase_and_retention(store):
    grants = _gateway_grants(store)
    altering = {t: {p for p in privs if p.startswith("ALTER")} for t, privs in grants.items()}
    # erase_targets: an erasure deletes its own targets when done (TRUNCATE would be a wider privilege).
    assert {t for t, p in altering.items() if "ALTER DELETE" in p} == set(ERASE_PLAN) | {"erase_targets"}
    assert {t for t, p in altering.items() if p - {"ALTER DELETE"}} == {"signals", "latest_signals"}
    assert {p for privs in altering.values() for p in privs} == {"ALTER DELETE", "ALTER TTL", "ALTER MATERIALIZE TTL"}
    everything = {p for privs in grants.values() for p in privs}
    assert not {p for p in everything if p.split()[0] in ("DROP", "TRUNCATE", "ALL", "ALTER UPDATE")}
    assert {t for t, p in grants.items() if any(x.startswith("CREATE") for x in p)} == {"schema_migrations"}


READ_DDL = default_migrations_dir() / "security" / "read_role.sql"


def test_the_read_user_may_only_select_under_the_gateways_default_query_limits(store):
    from vehicle_ingest.gateway.config import GatewayConfig
    from vehicle_ingest.gateway.service import query_limits

    formatted = [
        store.rows("SELECT formatQuery(%(q)s)", {"q": s})[0][0] for s in split_statements(READ_DDL.read_text())
    ]
    grants = [s for s in formatted if s.startswith("GRANT ")]
    assert grants == [
        "GRANT SELECT ON vehicle_ingest.* TO vehicle_ingest_reader",
        "GRANT vehicle_ingest_reader TO vi_reader",
    ]
    # Whom an erasure in progress targets is not an analyst's to read.
    assert [s for s in formatted if s.startswith("REVOKE ")] == [
        "REVOKE SELECT ON vehicle_ingest.erase_targets FROM vehicle_ingest_reader"
    ]
    profile = next(s for s in formatted if s.startswith("CREATE SETTINGS PROFILE"))
    fixed = dict(re.findall(r"(\w+) = ('?\w+'?) CONST", profile))
    expected = {
        k: repr(v) if isinstance(v, str) else str(v) for k, v in query_limits(GatewayConfig()).engine_settings().items()
    }
    assert fixed == expected  # every limit of an embedded read session, fixed on the server too
    assert "SETTINGS PROFILE `vehicle_ingest_reads`" in next(s for s in formatted if s.startswith("CREATE USER"))
