"""The gateway as Prometheus sees it: promtool on a live scrape, the alert rules, a real Prometheus server.

One gateway (real mosquitto, real child process, embedded store, a file CDP
sink) serves every test of this module: it stores 20 messages, rejects two
(malformed, VIN mismatch), runs a tag cycle for one owner and delivers the
changes, so every metric family has samples before it is scraped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import raw_message, speed_message
from tests.rig import Rig
from vehicle_ingest.gateway.broker import free_port, stop_process
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.simulators.publisher import publish

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "gateway" / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "vehicle-ingest.json"
JOB = "vehicle-ingest"
VIN = "SMXPRMTHEUS000001"
OTHER_VIN = "SMXPRMTHEUS000002"
STORED = 20
METRIC_NAME = re.compile(r"vehicle_ingest_[a-z0-9_]+")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs it (apt-get install prometheus)")
    return path


def _sample_names(scrape: str) -> set[str]:
    """Names with at least one sample in a text exposition (HELP/TYPE lines alone do not count).

    A histogram counts under its family name and its `_bucket`, `_sum` and `_count` series.
    """
    names = {line.split("{")[0].split(" ")[0] for line in scrape.splitlines() if line and not line.startswith("#")}
    return names | {n.removesuffix("_bucket") for n in names if n.endswith("_bucket")}


def _value(scrape: str, series: str) -> float:
    for line in scrape.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in the scrape")


@dataclass
class Live:
    gateway: GatewayProcess
    scrape: str


def _wait_for(check, what: str, timeout: float = 20.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("prometheus-gateway")
    with Rig(work) as rig:
        broker = rig.broker()
        gw = rig.gateway(
            broker.url,
            "--tags-interval-s",
            "0",
            "--cdp-urls",
            f"file://{work / 'cdp.jsonl'}",
            "--deliver-interval-s",
            "1",
        )
        messages = [speed_message(VIN, seq) for seq in range(1, STORED + 1)]
        messages.append(raw_message(f"vi/v1/{VIN}/signals", b"\xff\x00 not msgpack"))  # malformed
        messages.append(speed_message(VIN, 99, topic_vin=OTHER_VIN))  # vin_mismatch
        assert publish(messages, broker.url).messages == len(messages)
        gw.wait_stored(len(messages))
        gw.post("/api/owners", f"vin,owner_id,valid_from,drivers\n{VIN},owner-1,2020-01-01,\n".encode())
        assert gw.post("/api/tags/run", b"")["tags"]["added"] > 0

        def scrape_when_complete() -> str | None:
            text = gw.get("/metrics")[1].decode()
            stored = f"vehicle_ingest_messages_stored_total {STORED}.0" in text
            delivered = "vehicle_ingest_cdp_changes_delivered_total{" in text  # counted after the request
            return text if stored and delivered and "vehicle_ingest_cdp_requests_total{" in text else None

        scrape = _wait_for(scrape_when_complete, "the stored messages and a CDP delivery in /metrics")
        yield Live(gw, scrape)
        assert gw.stop() == 0


def test_live_scrape_passes_promtool_check_metrics(live: Live) -> None:
    result = subprocess.run(
        [_tool("promtool"), "check", "metrics"], input=live.scrape, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr
    scrape = live.scrape
    assert _value(scrape, "vehicle_ingest_messages_received_total") == STORED + 2
    assert _value(scrape, "vehicle_ingest_messages_stored_total") == STORED
    assert _value(scrape, "vehicle_ingest_samples_stored_total") == STORED * 10
    assert _value(scrape, 'vehicle_ingest_messages_rejected_total{reason="malformed"}') == 1
    assert _value(scrape, 'vehicle_ingest_messages_rejected_total{reason="vin_mismatch"}') == 1
    assert _value(scrape, 'vehicle_ingest_identity_violations_total{kind="vin_mismatch"}') == 1
    assert _value(scrape, "vehicle_ingest_receive_max") == 2000
    assert _value(scrape, "vehicle_ingest_mqtt_connected") == 1


def test_alert_rules_check_and_unit_tests() -> None:
    promtool = _tool("promtool")
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERTS_TEST)]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=ALERTS.parent)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
        assert "SUCCESS" in result.stdout


def test_scrape_config_is_valid() -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [_tool("promtool"), "check", "config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = config.read_text()
    assert f"job_name: {JOB}" in text and "gateway:9108" in text and "alerts.yml" in text


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_dashboard_is_importable_and_uses_only_scraped_metrics(live: Live) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 38 <= dashboard["schemaVersion"] <= 40
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
    used = set(METRIC_NAME.findall(DASHBOARD.read_text()))
    missing = used - _sample_names(live.scrape)
    assert not missing, f"dashboard uses metrics the gateway does not expose: {sorted(missing)}"
    # Everything the operators asked for has a panel.
    for name in (
        "messages_received_total",
        "messages_stored_total",
        "messages_rejected_total",
        "samples_stored_total",
        "unacked_messages",
        "receive_max",
        "batch_messages_bucket",
        "decode_seconds_bucket",
        "insert_seconds_bucket",
        "end_to_end_lag_seconds_bucket",
        "mqtt_reconnects_total",
        "mqtt_sessions_lost_total",
        "store_errors_total",
        "cdp_requests_total",
        "cdp_outbox_depth",
        "tag_changes_total",
    ):
        assert f"vehicle_ingest_{name}" in used, name


def test_alerts_use_only_scraped_metrics(live: Live) -> None:
    used = set(METRIC_NAME.findall(ALERTS.read_text()))
    missing = used - _sample_names(live.scrape)
    assert not missing, f"alerts.yml uses metrics the gateway does not expose: {sorted(missing)}"


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return None


def test_real_prometheus_scrapes_the_gateway(live: Live, tmp_path: Path) -> None:
    prometheus = _tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ALERTS}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{live.gateway.http_port}']\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def scraped_twice() -> list[dict] | None:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited with {process.returncode}: {_tail(tmp_path)}")
            if not _ready(base):
                return None
            # Two samples: rate() over the dashboard's windows has something to work with.
            return _query(base, f'count_over_time(vehicle_ingest_messages_stored_total{{job="{JOB}"}}[1m]) >= 2')

        _wait_for(scraped_twice, "Prometheus to scrape the gateway twice", timeout=30)

        stored = _query(base, f'vehicle_ingest_messages_stored_total{{job="{JOB}"}}')
        assert len(stored) == 1
        own = _value(live.gateway.get("/metrics")[1].decode(), "vehicle_ingest_messages_stored_total")
        assert float(stored[0]["value"][1]) == own == STORED
        up = _query(base, f'up{{job="{JOB}"}}')
        assert [float(s["value"][1]) for s in up] == [1.0]

        # Every dashboard query runs against the real server, and the ingestion panels show data.
        for expr in _dashboard_exprs():
            promql = expr.replace("$__rate_interval", "1m").replace("$job", JOB).replace("$instance", ".*")
            if promql.startswith("label_values("):
                continue
            _query(base, promql)
        assert _query(base, f'sum(rate(vehicle_ingest_messages_received_total{{job="{JOB}"}}[1m]))')

        # The alert rules load and evaluate without errors; none fires for a healthy gateway.
        def rules_evaluated() -> list[dict] | None:
            groups = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r["health"] == "ok" for r in rules) else None

        rules = _wait_for(rules_evaluated, "the alert rules to be evaluated", timeout=10)
        assert len(rules) == ALERTS.read_text().count("- alert:")
        firing = [r["name"] for r in rules if r["state"] != "inactive"]
        assert firing == [], firing
    finally:
        stop_process(process)
        log.close()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
