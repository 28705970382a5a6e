"""The query gate and the read session, on the real engine: what analysts may run, what they may not, and why.

Through a running gateway (HTTP, CLI, ingestion alongside): tests/test_query_isolation.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vehicle_ingest.errors import QueryFailedError, QueryRefusedError
from vehicle_ingest.reads import QueryLimits, ReadPool, ReadSession
from vehicle_ingest.storage import Store

VIN = "WVWZZZ1JZXW000001"


@pytest.fixture(scope="module")
def reader(store: Store) -> Iterator[ReadSession]:
    store.insert_rows(
        "ownership", ["vin", "owner_id", "valid_from", "drivers"], [(VIN, "o1", datetime(2025, 1, 1, tzinfo=UTC), [])]
    )
    session = ReadSession(store.dsn, QueryLimits(max_execution_s=3, max_result_rows=1000, max_memory_bytes=256 << 20))
    yield session
    session.close()


def outfile_variants(target: Path) -> list[str]:
    t = str(target)
    return [
        f"SELECT concat(char(10),'echo pwned',char(10)) INTO OUTFILE '{t}' TRUNCATE",
        f"SELECT 1 INTO OUTFILE '{t}' APPEND",
        f"select 1 into outfile '{t}'",
        f"/* comment */ SELECT 1 -- c\nINTO OUTFILE '{t}'",
        f"WITH a AS (SELECT 1) SELECT * FROM a INTO OUTFILE '{t}'",
        f"SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{t}'",
        f"SELECT 1 INTO OUTFILE '{t}' AND STDOUT",
        f"SELECT 1 INTO OUTFILE '{t}' COMPRESSION 'gzip'",
        f"EXPLAIN AST SELECT 1 INTO OUTFILE '{t}'",
        f"EXPLAIN SELECT 1 INTO OUTFILE '{t}'",
        f"SHOW TABLES INTO OUTFILE '{t}'",
        f"DESCRIBE TABLE ownership INTO OUTFILE '{t}'",
    ]


def test_no_into_outfile_variant_writes_a_file(reader, tmp_path):
    target = tmp_path / "pwned"
    for statement in outfile_variants(target):
        with pytest.raises(QueryRefusedError):
            reader.run(statement)
    assert not target.exists()


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("SELECT 1; DROP TABLE ownership", "Multi-statements are not allowed"),
        ("INSERT INTO ownership SELECT * FROM ownership", "not INSERT"),
        ("SET readonly = 0", "not SET"),
        ("CREATE TABLE x (a UInt8) ENGINE = Memory", "not CREATE"),
        ("ALTER TABLE ownership DELETE WHERE 1", "not ALTER"),
        ("DROP TABLE ownership", "not DROP"),
        ("TRUNCATE TABLE ownership", "not DROP or TRUNCATE"),
        ("SYSTEM DROP MARK CACHE", "not SYSTEM"),
        ("OPTIMIZE TABLE ownership FINAL", "not OPTIMIZE"),
        ("KILL QUERY WHERE 1", "not KILL"),
        ("RENAME TABLE ownership TO o2", "not RENAME"),
        ("GRANT SELECT ON *.* TO default", "not allowed"),
        ("SELECT 1 SETTINGS max_memory_usage = 0", "SETTINGS are not allowed"),
        ("SELECT 1 FORMAT CSV", "FORMAT is not allowed"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file()"),
        ("SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')", "table function url()"),
        ("SELECT * FROM executable('id', TSV, 'a String')", "table function executable()"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "table function remote()"),
        ("SELECT * FROM Python(os)", "table function Python()"),
        ("SELECT * FROM s3('http://x/y.csv')", "table function s3()"),
        ("SELECT file('/etc/passwd')", "function file()"),
        ("SELECT (SELECT file('/etc/hostname'))", "function file()"),
        ("DESCRIBE file('/etc/passwd')", "table name only"),
        ("SHOW PROCESSLIST", "table name only"),
        ("SHOW GRANTS", "table name only"),
        ("SELECT {x:UInt8}", "query parameters"),
        ("SELECT * FROM erase_targets", "not readable"),
        ("SELECT count() FROM default.erase_targets", "not readable"),
        ("SELECT 1 WHERE 1 IN (SELECT 1 FROM erase_targets)", "not readable"),
        ("   ", "empty query"),
        ("SELECT " + "(" * 3000 + "1" + ")" * 3000, "parse depth"),
        ("SELECT 'x' -- " + "a" * 70_000, "query_max_bytes"),
    ],
)
def test_refused_statements_name_the_reason(reader, statement, reason):
    with pytest.raises(QueryRefusedError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        reader.run(statement)


@pytest.mark.parametrize(
    ("statement", "first_row"),
    [
        ("SELECT count() FROM ownership", (1,)),
        ("select owner_id from ownership -- a comment", ("o1",)),
        ("SELECT owner_id FROM ownership;", ("o1",)),
        ("WITH o AS (SELECT owner_id FROM ownership) SELECT * FROM o UNION ALL SELECT 'x'", ("o1",)),
        ("SELECT number FROM numbers(5) WHERE number IN (SELECT 3)", (3,)),
        ("SELECT sum(number) FROM numbers(1000000)", (499999500000,)),
        ("SELECT 'a;b', 'INTO OUTFILE'", ("a;b", "INTO OUTFILE")),
        ("SHOW TABLES LIKE 'owner%'", ("ownership",)),
        ("DESCRIBE TABLE ownership", None),
        ("DESC `ownership`", None),
        ("EXISTS TABLE default.ownership", (1,)),
        ("SHOW CREATE TABLE ownership", None),
        ("SHOW COLUMNS FROM ownership", None),
        ("EXPLAIN SELECT count() FROM ownership", None),
        ("EXPLAIN PIPELINE graph = 1 SELECT 1", None),
        ("SELECT count() FROM system.tables WHERE name = 'signals'", (1,)),
    ],
)
def test_reads_run(reader, statement, first_row):
    result = reader.run(statement)
    assert result.rows
    if first_row is not None:
        assert result.rows[0] == first_row


def test_the_read_session_cannot_write_even_without_the_gate(reader):
    with pytest.raises(QueryFailedError, match="readonly"):
        reader.query("INSERT INTO ownership (vin, owner_id) VALUES ('WVWZZZ1JZXW000002', 'x')")
    assert reader.run("SELECT count() FROM ownership").rows == [(1,)]


def test_limits_stop_a_query_with_the_setting_to_change(reader):
    with pytest.raises(QueryFailedError, match="query_max_result_rows"):
        reader.run("SELECT number FROM numbers(5000)")
    with pytest.raises(QueryFailedError, match="query_max_memory_bytes"):
        reader.run("SELECT length(groupArray(number)) FROM numbers(100000000)")


def test_a_query_stopped_mid_stream_leaves_nothing_behind_for_the_next(store):
    # chDB returns a stopped query's partial output as the next query's result on the same handle:
    # here two blocks of 65,505 rows were out when the time limit struck.
    session = ReadSession(store.dsn, QueryLimits(max_execution_s=2, max_result_rows=10_000_000))
    with pytest.raises(QueryFailedError, match=r"query_max_execution_s \(2 s\)"):
        session.run("SELECT sleep(1), number FROM system.numbers")
    assert session.run("SELECT 42").rows == [(42,)]
    session.close()


def test_a_full_pool_answers_busy_at_once(store):
    from vehicle_ingest.errors import QueryBusyError

    pool = ReadPool(store.dsn, QueryLimits(max_concurrent=1))
    first = pool.acquire()
    with pytest.raises(QueryBusyError, match="query_max_concurrent"):
        pool.bind(lambda s: s.run("SELECT 1"))
    pool.release(first)
    assert pool.bind(lambda s: s.run("SELECT 1").rows)() == [(1,)]
    pool.close()


def test_results_travel_as_json_with_every_type(reader):
    result = reader.run(
        "SELECT toDateTime64('2026-01-02 03:04:05.678', 3, 'UTC') AS t, toDecimal64(1.5, 2) AS d, nan AS n,"
        " generateUUIDv4() != toUUID('00000000-0000-0000-0000-000000000000') AS u, [1, 2] AS a, map('k', 1) AS m,"
        " toIPv4('10.0.0.1') AS ip, 'ü' AS s"
    )
    import json

    body = json.loads(result.to_json())
    assert body["columns"] == ["t", "d", "n", "u", "a", "m", "ip", "s"]
    assert body["rows"][0][1:] == ["1.50", "nan", True, [1, 2], {"k": 1}, "10.0.0.1", "ü"]
    assert body["rows"][0][0].startswith("2026-01-02 03:04:05.678")
