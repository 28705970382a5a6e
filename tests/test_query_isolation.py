"""Analyst queries can never hurt ingestion or the host: every probe of the issue, through a real gateway process.

A real mosquitto, a real gateway on the embedded store, real HTTP and the real CLI. The gate's
statement-by-statement cases are in tests/test_query_gate.py; here is what a query does to the
running process: no file written, no write, no session left read-only, no leftover result, no
crash, bounded memory, a bounded number of queries at once, and ingestion at full rate meanwhile.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import metric, speed_message
from tests.test_query_gate import outfile_variants
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.simulators.load import LoadSpec, run_load
from vehicle_ingest.simulators.publisher import publish
from vehicle_ingest.storage import Store

pytestmark = pytest.mark.integration

WRITES = [
    "INSERT INTO signals SELECT * FROM signals",
    "SET max_insert_block_size = 1",
    "CREATE TABLE x (a UInt8) ENGINE = Memory",
    "ALTER TABLE events DELETE WHERE 1",
    "DROP TABLE dead_letters",
    "TRUNCATE TABLE events",
    "SYSTEM DROP MARK CACHE",
    "OPTIMIZE TABLE signals FINAL",
    "KILL QUERY WHERE 1",
    "SELECT 1 SETTINGS readonly = 0",
]


def _post(gw: GatewayProcess, path: str, body: bytes, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(gw.url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vehicle_ingest.gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _vm(pid: int, field: str) -> int:
    """VmRSS / VmHWM of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(field)


def _publish_and_check(gw: GatewayProcess, first_seq: int, n: int = 50) -> None:
    """Publish n new messages; all of them are stored (ingestion runs) and readiness holds."""
    before = gw.stats()["messages"]
    totals = publish([speed_message("WVWZZZ1JZXW000001", first_seq + i) for i in range(n)], gw.mqtt_url)
    assert totals.messages == n
    assert gw.wait_stored(before + n, timeout=60)["messages"] == before + n
    assert gw.get("/readyz")[0] == 200


def test_no_query_writes_a_file_or_the_store_and_ingestion_never_stops(rig, tmp_path):
    target = tmp_path / "pwned"
    gw = rig.gateway(rig.broker().url)
    _publish_and_check(gw, 1)
    for statement in [*outfile_variants(target), *WRITES]:
        status, answer = _post(gw, "/api/sql", statement.encode())
        assert status == 400, statement
        assert answer["error"], statement
    assert not target.exists()
    _publish_and_check(gw, 1000)  # the store session was never touched: inserts still succeed
    assert _post(gw, "/api/sql", b"SELECT count() FROM signals")[1]["rows"] == [[2 * 50 * 10]]
    cli = _cli("sql", "--gateway", gw.url, f"SELECT 1 INTO OUTFILE '{target}'")
    assert cli.returncode == 2 and not target.exists()
    assert cli.stderr.count("\n") == 1 and "INTO OUTFILE is not allowed" in cli.stderr  # one line, no traceback
    assert gw.stop() == 0


def test_a_query_stopped_by_its_time_limit_leaves_nothing_behind_and_cannot_crash_the_gateway(rig, tmp_path):
    sink = tmp_path / "cdp.jsonl"
    flags = ("--query-max-execution-s", "2", "--query-max-result-rows", "10000000", "--cdp-urls", f"file://{sink}")
    gw = rig.gateway(rig.broker().url, *flags)
    status, answer = _post(gw, "/api/sql", b"SELECT sleep(1), number FROM system.numbers")
    assert status == 400 and "query_max_execution_s (2 s)" in answer["error"]
    assert _post(gw, "/api/sql", b"SELECT 42")[1]["rows"] == [[42]]
    owners = b"vin,owner_id,valid_from,drivers\nWVWZZZ1JZXW000001,o-1,2020-01-01,\n"
    assert gw.post("/api/owners", owners) == {"loaded": 1}
    _publish_and_check(gw, 1)
    assert "tags" in gw.post("/api/tags/run", b"{}")  # the tag cycle and the outbox read their own results
    assert gw.process.poll() is None
    assert gw.stop() == 0


def test_a_heavy_query_is_bounded_in_memory_and_in_result_size(rig):
    gw = rig.gateway(rig.broker().url, "--query-max-memory-bytes", str(256 << 20))
    pid = gw.process.pid
    baseline = _vm(pid, "VmRSS")
    status, answer = _post(gw, "/api/sql", b"SELECT length(groupArray(number)) FROM numbers(400000000)")
    assert status == 400 and "query_max_memory_bytes" in answer["error"]
    status, answer = _post(gw, "/api/sql", b"SELECT number FROM numbers(20000000)")
    assert status == 400 and "query_max_result_rows" in answer["error"]
    # Unbounded, the first took the gateway from 366 MB to 6.5 GB; the limit is 256 MiB.
    assert _vm(pid, "VmHWM") - baseline < 400
    _publish_and_check(gw, 1)
    assert gw.stop() == 0


def test_a_full_set_of_read_slots_answers_503_at_once(rig):
    gw = rig.gateway(rig.broker().url, "--query-max-concurrent", "1")
    slow = threading.Thread(target=_post, args=(gw, "/api/sql", b"SELECT sleep(3)"))
    slow.start()
    time.sleep(0.5)
    started = time.monotonic()
    status, answer = _post(gw, "/api/sql", b"SELECT 1")
    assert status == 503 and "query_max_concurrent" in answer["error"]
    assert time.monotonic() - started < 1.0  # refused, not queued
    slow.join()
    assert _post(gw, "/api/sql", b"SELECT 1") == (200, {"columns": ["1"], "rows": [[1]]})
    assert gw.stop() == 0


def test_sql_on_a_stopped_gateways_store_reads_but_never_writes(tmp_path):
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    store.migrate()
    store.insert_rows("dead_letters", ["topic", "reason"], [("vi/v1/x/signals", "bad_topic")])
    store.close()
    dsn = f"chdb://{tmp_path / 'store'}"
    for statement in [
        "TRUNCATE TABLE dead_letters",
        "DROP TABLE dead_letters",
        f"SELECT 1 INTO OUTFILE '{tmp_path / 'x'}'",
    ]:
        result = _cli("sql", "--store", dsn, statement)
        assert result.returncode == 2, statement
        assert result.stderr.startswith("vehicle-ingest: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()
    result = _cli("sql", "--store", dsn, "SELECT reason FROM dead_letters")
    assert (result.returncode, result.stdout) == (0, "reason\nbad_topic\n")
    missing = _cli("sql", "--store", f"chdb://{tmp_path / 'nothing-here'}", "SELECT 1")
    assert missing.returncode == 2 and "no store at" in missing.stderr
    assert not (tmp_path / "nothing-here").exists()  # a read never creates a store


HEAVY = b"SELECT count() FROM (SELECT number % 1000003 AS k, count() FROM numbers(300000000) GROUP BY k)"


# A rate compared with itself: run alone, not beside another test worker taking a core.
@pytest.mark.serial
def test_ingestion_keeps_its_rate_while_heavy_queries_run(rig):
    """Stored messages/s with heavy queries running back to back stay >= 90 % of the rate without them."""
    gw = rig.gateway(rig.broker().url)
    spec = LoadSpec(vehicles=2000, rate=400, hz=10, signals=10, duration_s=18, connections=2, events_per_hour=0)
    load = threading.Thread(
        target=run_load, args=(spec, gw.mqtt_url, load_signal_catalog(), load_event_catalog(), None)
    )
    load.start()
    time.sleep(3)  # warm-up: connections, the first batches
    quiet = _stored_rate(gw, 6)
    stop = threading.Event()
    heavy_runs: list[int] = []

    def queries() -> None:
        while not stop.is_set():
            heavy_runs.append(_post(gw, "/api/sql", HEAVY)[0])

    runner = threading.Thread(target=queries)
    runner.start()
    time.sleep(0.5)
    busy = _stored_rate(gw, 6)
    stop.set()
    runner.join()
    load.join()
    assert heavy_runs and set(heavy_runs) == {200}  # the queries ran (and were not refused)
    print(f"stored msgs/s: {quiet:.0f} without queries, {busy:.0f} with ({busy / quiet:.1%})")
    assert busy >= 0.9 * quiet
    assert gw.stop() == 0


def _stored_rate(gw: GatewayProcess, seconds: float) -> float:
    first = metric(gw, "vehicle_ingest_messages_stored_total")
    time.sleep(seconds)
    return (metric(gw, "vehicle_ingest_messages_stored_total") - first) / seconds
