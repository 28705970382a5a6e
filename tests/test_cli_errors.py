"""Every way a user's command can fail says so in one line, through the real `vehicle-ingest` process.

Exit 2 for usage and configuration, 1 at run time, 130 after Ctrl-C; never a traceback. Also what
the gateway says loudly now: broker connect failures, a session taken over, its store and port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import metric
from vehicle_ingest.gateway.broker import Mosquitto, free_port
from vehicle_ingest.gateway.demo import GatewayProcess

CLI = [sys.executable, "-m", "vehicle_ingest.gateway.cli"]


def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env)


def _one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with `code` and exactly one stderr line holding every word; no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _unused_port() -> int:
    return free_port()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("simulate", "--vehicles", "-5"), ("--vehicles", "must be a whole number >= 1, got -5")),
        (("simulate", "--duration", "nan"), ("--duration", "must be a number > 0")),
        (("load", "--rate", "0"), ("--rate", "must be a number > 0")),
        (("load", "--signals", "99", "--mqtt-url", "mqtt://127.0.0.1:1"), ("signals: must be 1..12",)),
        (("demo", "--vehicles", "0"), ("--vehicles",)),
        (("nope",), ("invalid choice: 'nope'",)),
        (("sql",), ("the following arguments are required: query",)),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, words):
    _one_line(_run(*args), 2, *words)


def _gateway_fails(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """The gateway logs its configuration first: its failure is the one last line, with no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, (word, last)


def test_a_store_path_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    common = ("--http-port", str(_unused_port()), "--mqtt-url", "mqtt://127.0.0.1:1", "--log-format", "human")
    result = _run("gateway", "--store", f"chdb://{blocker}/store", *common)
    _gateway_fails(result, 1, "cannot create the store folder", str(blocker), "Not a directory")
    _gateway_fails(_run("gateway", "--store", "chdb:///proc/vi-store", *common), 1, "/proc/vi-store")


def test_a_port_in_use_is_refused_before_a_store_is_created(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _run(
            "gateway", "--store", f"chdb://{tmp_path / 'store'}", "--http-port", port, "--log-format", "human"
        )
    _gateway_fails(result, 2, "http_port", f"127.0.0.1:{port}", "Address already in use")
    assert not (tmp_path / "store").exists()


def test_an_unreachable_broker_or_gateway_is_named(tmp_path):
    dead = f"mqtt://127.0.0.1:{_unused_port()}"
    _one_line(_run("simulate", "--vehicles", "1", "--mqtt-url", dead), 1, "cannot reach the broker", dead)
    load = _run("load", "--vehicles", "10", "--rate", "10", "--duration", "1", "--mqtt-url", dead, "--quiet")
    assert load.returncode == 1 and "cannot reach the broker" in load.stderr.splitlines()[-1]
    gateway = f"http://127.0.0.1:{_unused_port()}"
    _one_line(_run("stats", "--gateway", gateway), 1, "cannot reach the gateway", gateway)


def test_missing_files_and_stores_are_refused_not_created(tmp_path):
    _one_line(_run("owners", str(tmp_path / "nope.csv"), "--store", f"chdb://{tmp_path}"), 2, "nope.csv")
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home)}
    env.pop("VI_STORE", None)
    for command in (("stats",), ("sql", "SELECT 1"), ("tags", "--show"), ("report", "--out", str(tmp_path / "r"))):
        _one_line(_run(*command, cwd=tmp_path, env=env), 2, "no store at", str(home))
    assert not (home / ".local" / "share" / "vehicle-ingest").exists() and not (tmp_path / ".vi-data").exists()


def test_an_unwritable_report_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line(
        _run("report", "--out", str(blocker / "out"), "--store", f"chdb://{tmp_path}"), 2, "cannot write the report"
    )


def test_a_bad_cdp_url_fails_config_check_by_key(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[cdp]\ncdp_urls = "segment+https://api.example/v1,ftp://nowhere/x"\n')
    result = _run("config", "check", str(path))
    assert result.returncode == 2
    assert "cdp_urls" in result.stderr and "Segment write key" in result.stderr and "unsupported" in result.stderr


@pytest.mark.integration
def test_ctrl_c_ends_simulate_with_the_summary_and_truth_of_what_settled(rig, tmp_path):
    gw = rig.gateway(rig.broker().url)
    truth = tmp_path / "truth.json"
    args = ["simulate", "--vehicles", "20", "--duration", str(30 * 86400), "--speedup", "200000"]
    proc = subprocess.Popen(
        [*CLI, *args, "--mqtt-url", gw.mqtt_url, "--truth", str(truth)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while gw.stats()["messages"] < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    stored = gw.wait_stored(json.loads(truth.read_text())["messages"])["messages"]
    assert gw.stop() == 0
    summary = json.loads(out.decode().splitlines()[-1])
    assert proc.returncode == 130 and b"Traceback" not in err
    assert summary["interrupted"] is True and json.loads(truth.read_text()) == summary
    # Receipts confirmed these as stored; what was in flight at Ctrl-C, unconfirmed, counts as failed
    # (the head unit cannot know) and may or may not have landed.
    assert 50 <= summary["messages"] <= stored <= summary["messages"] + summary["failed"]


@pytest.mark.integration
def test_the_gateway_says_why_it_cannot_reach_the_broker(rig, tmp_path):
    dead = f"mqtt://127.0.0.1:{_unused_port()}"
    gw = rig.gateway(dead, ready=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            assert gw.get("/readyz")[0] == 503  # up, and not ready: no broker
            break
        except OSError:
            time.sleep(0.2)
    time.sleep(3)
    assert metric(gw, "vehicle_ingest_mqtt_connect_failures_total") >= 1
    log = (tmp_path / "gateway.log").read_text()
    assert f"cannot connect to the mqtt broker at {dead}: Connection refused" in log
    assert log.count("cannot connect to the mqtt broker") == 1  # rate-limited: one line per 30 s
    gw.stop()


@pytest.mark.integration
def test_two_gateways_with_one_client_id_say_the_session_was_taken_over(rig, tmp_path):
    broker = rig.broker()
    a = rig.gateway(broker.url, name="a", client_id="gw", ready=False)
    rig.gateway(broker.url, name="b", client_id="gw", ready=False)
    a.wait_ready()
    deadline = time.monotonic() + 30
    while metric(a, "vehicle_ingest_mqtt_session_takeovers_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(a, "vehicle_ingest_mqtt_session_takeovers_total") >= 1
    assert "mqtt session taken over" in (tmp_path / "a.log").read_text()


@pytest.mark.integration
def test_default_client_ids_differ_per_store_and_port_0_picks_a_free_port(tmp_path):
    with Mosquitto.running(tmp_path / "broker") as broker:
        gws = [
            GatewayProcess(
                broker.url, f"chdb://{tmp_path / name}", 0, tmp_path / f"{name}.log", "--log-format", "human"
            )
            for name in ("a", "b")
        ]
        ports = [_logged_port(tmp_path / f"{name}.log") for name in ("a", "b")]
        for gw, port in zip(gws, ports, strict=True):
            gw.url = f"http://127.0.0.1:{port}"
            gw.wait_ready()
        time.sleep(2)  # two gateways sharing an id would now be taking each other's session
        assert [metric(gw, "vehicle_ingest_mqtt_session_takeovers_total") for gw in gws] == [0, 0]
        text = gws[0].get("/metrics")[1].decode()
        assert "process_resident_memory_bytes" in text and "vehicle_ingest_build_info{" in text
        assert "_created" not in text
        for gw in gws:
            gw.stop()


def _logged_port(log: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            if "gateway up: http 127.0.0.1:" in line:
                return int(line.split("gateway up: http 127.0.0.1:")[1].split(",")[0])
        time.sleep(0.1)
    raise AssertionError("the gateway never logged its port")
