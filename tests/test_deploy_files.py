"""gateway/deploy: the compose stack, the systemd unit and their configs agree with each other and the code.

Nothing here runs containers; the files are parsed and cross-checked, the gateway configs go
through `config check`, the unit through `systemd-analyze verify` and mosquitto.conf through
a real mosquitto when those tools are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from vehicle_ingest.gateway.broker import free_port, mosquitto_path
from vehicle_ingest.gateway.config import GROUPS, settings

yaml = pytest.importorskip("yaml", reason="PyYAML parses compose.yaml (dev extra)")

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "gateway" / "deploy"
UNIT = DEPLOY / "vehicle-ingest.service"
CONFIG_IN_CONTAINER = "/etc/vehicle-ingest/gateway.toml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _unit() -> dict[str, list[str]]:
    """`Key=Value` lines of the unit (all sections), repeated keys in order."""
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)(s|min)?", str(duration))
    assert match, duration
    return int(match[1]) * (60 if match[2] == "min" else 1)


def _mount(service: dict, target: str) -> Path:
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return (DEPLOY / source).resolve()
    raise AssertionError(f"nothing mounted at {target}")


def _config_check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vehicle_ingest.gateway.cli", "config", "check", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or {}, timeout=60)


def test_compose_has_the_four_services_and_every_file_it_references_exists(compose):
    assert set(compose["services"]) == {"mosquitto", "clickhouse", "gateway", "prometheus"}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name}: {source} is missing"
    build = compose["services"]["gateway"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert context == REPO and dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # --from: another build stage, not the context
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"Dockerfile copies {source}, which is not in the repo"


def test_compose_gateway_config_passes_check_and_matches_the_other_services(compose):
    gateway = compose["services"]["gateway"]
    assert gateway["command"] == ["vehicle-ingest", "gateway", "--config", CONFIG_IN_CONTAINER]
    path = _mount(gateway, CONFIG_IN_CONTAINER)
    # Off loopback the gateway refuses to start without an /api token; compose requires the user to set one.
    assert "api_token" in _config_check(path).stderr
    assert gateway["environment"]["VI_API_TOKEN"].startswith("${VI_API_TOKEN:?")
    result = _config_check(path, {"VI_API_TOKEN": "compose-test-token-0123"})
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)
    store = urlsplit(tomllib.loads(path.read_text())["store"]["store"])
    env = compose["services"]["clickhouse"]["environment"]
    assert (store.hostname, store.port) == ("clickhouse", 8123)
    assert (store.username, store.password, store.path) == (
        env["CLICKHOUSE_USER"],
        env["CLICKHOUSE_PASSWORD"],
        "/" + env["CLICKHOUSE_DB"],
    )
    assert effective["mqtt"]["mqtt_url"] == "mqtt://mosquitto:1883"
    assert "listener 1883" in (DEPLOY / "mosquitto.conf").read_text().splitlines()
    assert effective["http"]["http_host"] == "0.0.0.0"
    assert _seconds(gateway["stop_grace_period"]) > effective["limits"]["stop_timeout_s"]


def test_prometheus_scrapes_the_compose_gateway(compose):
    prometheus = compose["services"]["prometheus"]
    config = yaml.safe_load(_mount(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    for rule_file in config.get("rule_files", []):
        _mount(prometheus, str(Path("/etc/prometheus") / rule_file))  # relative to the config file
    port = tomllib.loads((DEPLOY / "gateway.compose.toml").read_text())["http"]["http_port"]
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert f"gateway:{port}" in targets


def test_example_gateway_toml_sets_every_key_in_its_table_and_passes_check():
    document = tomllib.loads((DEPLOY / "gateway.toml").read_text())
    assert list(document) == list(GROUPS)
    for group, table in document.items():
        assert sorted(table) == sorted(s.name for s in settings() if s.group == group)
    result = _config_check(DEPLOY / "gateway.toml")
    assert result.returncode == 0, result.stderr


def test_systemd_unit_runs_the_gateway_with_the_example_config_and_stops_cleanly():
    unit = _unit()
    assert unit["ExecStart"] == [f"/opt/vehicle-ingest/.venv/bin/vehicle-ingest gateway --config {CONFIG_IN_CONTAINER}"]
    assert unit["User"] != ["root"] and unit["Restart"] == ["on-failure"] and unit["KillSignal"] == ["SIGTERM"]
    assert "75" in unit["SuccessExitStatus"] and "75" in unit["RestartForceExitStatus"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # invalid configuration: no restart loop
    example = tomllib.loads((DEPLOY / "gateway.toml").read_text())
    assert _seconds(unit["TimeoutStopSec"][0]) > example["limits"]["stop_timeout_s"]
    store_dir = Path(example["store"]["store"].removeprefix("chdb://"))
    assert any(store_dir.is_relative_to(p) for p in unit["ReadWritePaths"])
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies_without_warnings(tmp_path):
    unit = tmp_path / UNIT.name  # the same unit, run from this checkout's venv
    unit.write_text(UNIT.read_text().replace("/opt/vehicle-ingest/.venv/bin/", str(Path(sys.executable).parent) + "/"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto not installed")
def test_mosquitto_conf_is_accepted_by_mosquitto(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # mosquitto started as root drops to its own user
    text = (DEPLOY / "mosquitto.conf").read_text()
    text = text.replace("listener 1883", f"listener {free_port()} 127.0.0.1").replace("/mosquitto/data/", f"{data}/")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    proc = subprocess.Popen([str(mosquitto_path()), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    finally:
        proc.terminate()
        proc.wait(10)
