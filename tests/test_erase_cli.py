"""Erase and owner import through the real command line and a real gateway process.

The commands run as `python -m vehicle_ingest.gateway.cli ...` against an embedded store of their own (this
module opens no store in-process: chDB allows one data directory per process), or against a
running gateway.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import now_ms, speed_message
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.privacy import ERASE_PLAN
from vehicle_ingest.simulators.publisher import publish

VIN = "SMXCL1ERASE000001"
UNKNOWN_OWNER = "nothing to erase: the store holds no row of this owner (no ownership row, no tag history)"
UNKNOWN_VIN = "nothing to erase: the store holds no row of this VIN"

# A process of its own opens the store, migrates and stores: one vehicle of owner-cli (10 speed
# samples, one ownership row) and one undecodable dead letter on a topic without a VIN (vin "").
_POPULATE = """
import sys
from prometheus_client import CollectorRegistry
from tests.helpers import SIGNALS, now_ms, speed_message
from vehicle_ingest.catalog import load_event_catalog
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.owners import Ownership, save_registry
from vehicle_ingest.storage import Store

store = Store.open(sys.argv[1])
store.migrate()
m = speed_message(sys.argv[2], 1)
Pipeline(store, SIGNALS, load_event_catalog(), Metrics.create(CollectorRegistry())).ingest(
    [m.topic, "vi/junk"], [m.payload, b"\\xc1"], now_ms()
)
save_registry(store, [Ownership(sys.argv[2], "owner-cli", now_ms() - 86_400_000)])
store.close()
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vehicle_ingest.gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def populated(tmp_path: Path) -> str:
    dsn = f"chdb://{tmp_path / 'store'}"
    subprocess.run([sys.executable, "-c", _POPULATE, dsn, VIN], check=True, timeout=300)
    return dsn


def _rows(dsn: str, query: str) -> list[list[str]]:
    """The `sql` command's tab-separated answer, header first."""
    result = _cli("sql", "--store", dsn, query)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def _assert_one_line_and_exit(result: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (code, "", f"vehicle-ingest: {line}\n")


def test_unknown_owner_or_vin_deletes_nothing_and_exits_1_with_one_line(populated: str):
    letters = [["vin", "topic"], ["", "vi/junk"]]
    assert _rows(populated, "SELECT vin, topic FROM dead_letters") == letters
    for whose, message in ((["--owner", "owner-nobody"], UNKNOWN_OWNER), (["--vin", "SMXNEVERSEEN00001"], UNKNOWN_VIN)):
        for dry_run in ([], ["--dry-run"]):
            _assert_one_line_and_exit(_cli("erase", *whose, *dry_run, "--store", populated), 1, message)
    assert _rows(populated, "SELECT vin, topic FROM dead_letters") == letters  # the vin "" letter survives
    assert _rows(populated, "SELECT count() FROM signals") == [["count()"], ["10"]]
    deletions = "SELECT count() FROM system.mutations WHERE position(command, 'erase_targets') > 0"
    assert _rows(populated, deletions) == [["count()"], ["0"]], "no deletion was even issued"


def test_dry_run_reports_what_erase_then_deletes(populated: str):
    expected = dict.fromkeys(ERASE_PLAN, 0) | {"signals": 10, "latest_signals": 1, "daily_activity": 1, "ownership": 1}
    dry = _cli("erase", "--vin", VIN, "--dry-run", "--store", populated)
    assert (dry.returncode, json.loads(dry.stdout)) == (0, {"would_erase": expected})
    assert _rows(populated, "SELECT count() FROM signals") == [["count()"], ["10"]]
    done = _cli("erase", "--vin", VIN, "--store", populated)
    assert (done.returncode, json.loads(done.stdout)) == (0, {"erased": expected})
    assert _rows(populated, "SELECT count() FROM signals") == [["count()"], ["0"]]
    _assert_one_line_and_exit(_cli("erase", "--vin", VIN, "--store", populated), 1, UNKNOWN_VIN)


def _registry(tmp_path: Path, owner_id: str, suffix: str) -> Path:
    path = tmp_path / f"owners.{suffix}"
    valid_from = "2026-01-01T00:00:00+00:00"
    if suffix == "json":
        path.write_text(json.dumps([{"vin": VIN, "owner_id": owner_id, "valid_from": valid_from}]))
    else:
        path.write_text(f"vin,owner_id,valid_from,drivers\n{VIN},{owner_id},{valid_from},\n")
    return path


def test_owners_refuses_an_overlong_owner_id_with_one_line(populated: str, tmp_path: Path):
    cases = {
        # The csv module's own field limit (131,072) comes first: still one line, naming ours.
        ("x" * 300_000, "csv"): "line 2: unreadable CSV (field larger than field limit (131072)): a quote opened"
        " and never closed, or a value far longer than any id (owner and driver ids are at most 256 characters)",
        ("x" * 300_000, "json"): "item 1: owner_id has 300000 characters; at most 256 are allowed",
        ("x" * 257, "csv"): "line 2: owner_id has 257 characters; at most 256 are allowed",
        ("owner\x1b[31m", "json"): "item 1: owner_id contains the control character U+001B; none are allowed",
    }
    for (owner_id, suffix), problem in cases.items():
        path = _registry(tmp_path, owner_id, suffix)
        _assert_one_line_and_exit(_cli("owners", str(path), "--store", populated), 2, f"{path}: {problem}")
    assert _rows(populated, "SELECT owner_id FROM ownership") == [["owner_id"], ["owner-cli"]]
    accepted = _cli("owners", str(_registry(tmp_path, "o" * 256, "csv")), "--store", populated)
    assert (accepted.returncode, json.loads(accepted.stdout)) == (0, {"loaded": 1})


def _post(gw: GatewayProcess, path: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(gw.url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _files_naming(root: Path, identifier: str) -> list[str]:
    needle = identifier.encode()
    return sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file() and needle in f.read_bytes())


@pytest.mark.integration
def test_erase_through_a_gateway_leaves_no_trace_and_answers_404_for_unknown_targets(broker, rig, tmp_path):
    gw = rig.gateway(broker.url, "--tags-interval-s", "0")
    store_dir = tmp_path / "store"
    # No repeated run in the VIN: LZ4 would split "0000001" and hide it from a byte scan.
    vin, owner = "SMXGWERA5EV1N2K3P", "owner-gw-erase"
    m = speed_message(vin, 1, base_ts=now_ms() - 120_000)
    assert publish([m], broker.url).failed == 0
    gw.wait_stored(1)
    registry = f"vin,owner_id,valid_from,drivers\n{vin},{owner},2026-01-01T00:00:00+00:00,\n".encode()
    assert _post(gw, "/api/owners", registry) == (200, {"loaded": 1})
    assert _files_naming(store_dir, vin) and _files_naming(store_dir, owner), (
        "the scan must see them, else it proves nothing"
    )

    assert _post(gw, "/api/erase", json.dumps({"owner": "owner-nobody"}).encode()) == (404, {"error": UNKNOWN_OWNER})
    assert _post(gw, "/api/erase", json.dumps({"vin": "SMXNEVERSEEN00001"}).encode()) == (404, {"error": UNKNOWN_VIN})
    cli = _cli("erase", "--owner", "owner-nobody", "--gateway", gw.url)
    _assert_one_line_and_exit(cli, 1, f"{gw.url}/api/erase: 404: {UNKNOWN_OWNER}")
    assert gw.sql(f"SELECT count() FROM signals WHERE vin = '{vin}'") == [[10]]

    expected = dict.fromkeys(ERASE_PLAN, 0) | {"signals": 10, "latest_signals": 1, "daily_activity": 1, "ownership": 1}
    assert _post(gw, "/api/erase", json.dumps({"owner": owner, "dry_run": True}).encode()) == (
        200,
        {"would_erase": expected},
    )
    assert _post(gw, "/api/erase", json.dumps({"owner": owner}).encode()) == (200, {"erased": expected})
    for identifier in (vin, owner):
        assert gw.sql(f"SELECT count() FROM system.mutations WHERE position(command, '{identifier}') > 0") == [[0]]
        assert _files_naming(store_dir, identifier) == []
    assert gw.sql(f"SELECT count() FROM signals WHERE vin = '{vin}'") == [[0]]
    assert gw.sql("SELECT count() FROM system.parts WHERE NOT active AND table = 'signals'") == [[0]]


@pytest.mark.integration
def test_owners_route_refuses_an_overlong_owner_id_with_400(broker, rig):
    gw = rig.gateway(broker.url, "--tags-interval-s", "0")
    registry = f"[{json.dumps({'vin': VIN, 'owner_id': 'x' * 300_000, 'valid_from': '2026-01-01'})}]".encode()
    error = "request body: item 1: owner_id has 300000 characters; at most 256 are allowed"
    assert _post(gw, "/api/owners", registry) == (400, {"error": error, "problems": [error]})
    assert gw.sql("SELECT count() FROM ownership") == [[0]]
