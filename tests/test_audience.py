"""`vehicle-ingest audience TAG` and `report --gateway`: the owners behind a bar of the report, from the store
or from a running gateway, through the real command.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vehicle_ingest.storage import Store

CLI = [sys.executable, "-m", "vehicle_ingest.gateway.cli"]
AS_OF = 1_767_225_600_000  # 2026-01-01
COLUMNS = ["message_id", "owner_id", "tag", "action", "evidence", "traits", "at", "transition"]


def _at(day: int) -> datetime:
    return datetime(2025, 12, day, tzinfo=UTC)


ROWS = [  # (owner, tag, action, day, transition, evidence)
    ("o-1", "maintenance_overdue", "added", 1, 0, {"km_since_service": 16000}),
    ('=HYPERLINK("x")', "maintenance_overdue", "added", 2, 0, {"km_since_service": 20000}),
    ("o-3", "maintenance_overdue", "added", 3, 0, {"km_since_service": 15500}),
    ("o-3", "maintenance_overdue", "removed", 20, 1, {}),  # serviced since: not in the audience
    ("o-4", "commuter", "added", 4, 0, {"commute_days_28d": 12}),
]


def _store(path: Path) -> None:
    store = Store.open(f"chdb://{path}")
    store.migrate()
    rows = [
        (f"m{i}", owner, tag, action, json.dumps(evidence), "{}", _at(day), transition)
        for i, (owner, tag, action, day, transition, evidence) in enumerate(ROWS)
    ]
    store.insert_rows("tag_history", COLUMNS, rows)
    store.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audience") / "store"
    subprocess.run([sys.executable, "-c", f"from tests.test_audience import _store; _store({str(path)!r})"], check=True)
    return path


def test_the_audience_is_who_holds_the_tag_now_as_csv_a_spreadsheet_cannot_run(store_path):
    result = _cli("audience", "maintenance_overdue", "--store", f"chdb://{store_path}", "--as-of-ms", str(AS_OF))
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["owner_id", "since", "evidence"]
    assert rows[1:] == [
        ['\'=HYPERLINK("x")', "2025-12-02T00:00:00.000Z", '{"km_since_service":20000}'],
        ["o-1", "2025-12-01T00:00:00.000Z", '{"km_since_service":16000}'],
    ]


def test_an_unknown_tag_names_the_known_ones(store_path):
    result = _cli("audience", "nope", "--store", f"chdb://{store_path}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "unknown tag 'nope'" in result.stderr and "maintenance_overdue" in result.stderr


@pytest.mark.integration
def test_audience_and_report_through_a_running_gateway(rig, store_path, tmp_path):
    work = tmp_path / "gw"
    work.mkdir()
    subprocess.run(["cp", "-r", str(store_path), str(work / "store")], check=True)
    gw = rig.gateway(rig.broker().url, store=work / "store")
    result = _cli("audience", "maintenance_overdue", "--gateway", gw.url, "--format", "json", "--as-of-ms", str(AS_OF))
    answer = json.loads(result.stdout)
    assert answer["owners"] == 2 and [m["owner_id"] for m in answer["members"]] == ['=HYPERLINK("x")', "o-1"]
    out = tmp_path / "report"
    report = _cli("report", "--gateway", gw.url, "--out", str(out), "--as-of-ms", str(AS_OF))
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == str(out / "index.html")
    assert gw.stop() == 0
    page = (out / "index.html").read_text()
    assert "no CDP has received them yet" in page  # the wording follows the deployment: no sink configured
    assert "delivered to the CDP" not in page
