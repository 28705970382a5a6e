"""Scale features end to end: the load generator (multiplexed and one connection per vehicle) and `--workers`."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import metric
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.gateway.broker import Mosquitto
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.workers import worker_config
from vehicle_ingest.simulators.load import LoadResult, LoadSpec, run_load

SIGNALS, EVENTS = load_signal_catalog(), load_event_catalog()


def _load(spec: LoadSpec, url: str) -> LoadResult:
    return run_load(spec, url, SIGNALS, EVENTS, progress=None)


def _assert_stored_exactly(stats: dict, result: LoadResult) -> None:
    t = result.totals
    assert t.failed == 0
    assert (stats["messages"], stats["samples"], stats["events"]) == (t.messages, t.samples, t.events)
    assert stats["value_sum"] == pytest.approx(t.value_sum, rel=1e-12)
    assert stats["rejected"] == 0


def test_load_spec_derives_period_and_batch_size() -> None:
    spec = LoadSpec(vehicles=10_000, rate=2_000, hz=10, signals=10)
    assert spec.period_s == 5.0
    assert spec.samples_per_message == 500  # 10 signals x 10 Hz x 5 s
    with pytest.raises(ValueError, match="signals"):
        LoadSpec(signals=99).check()


def test_multiplexed_fleet_at_a_target_rate_is_stored_exactly_once(broker: Mosquitto, rig) -> None:
    gw = rig.gateway(broker.url, "--batch-linger-ms", "50")
    spec = LoadSpec(vehicles=600, rate=300, hz=2, signals=4, duration_s=4, connections=3, events_per_hour=600)
    result = _load(spec, broker.url)
    assert result.totals.messages == result.offered
    assert result.totals.events > 0
    # Rate control: about rate x duration messages, over about `duration` seconds.
    assert result.offered == pytest.approx(spec.rate * spec.duration_s + result.totals.events / 2, rel=0.05)
    assert result.totals.seconds == pytest.approx(spec.duration_s, abs=1.5)
    _assert_stored_exactly(gw.wait_stored(result.totals.messages), result)


def test_one_mqtt_connection_per_vehicle(broker: Mosquitto, rig) -> None:
    gw = rig.gateway(broker.url, "--batch-linger-ms", "50")
    spec = LoadSpec(vehicles=400, rate=200, hz=1, signals=3, duration_s=4, per_vehicle=True)
    result = _load(spec, broker.url)
    assert result.connections == 400
    assert result.totals.messages == result.offered >= 400 * 2  # every vehicle sent every period
    _assert_stored_exactly(gw.wait_stored(result.totals.messages), result)


def test_worker_config_splits_identity_ports_and_shards() -> None:
    base = GatewayConfig(workers=3, store="chdb:///data/vi", http_port=9200, client_id="gw", tags_interval_s=60)
    configs = [worker_config(base, k) for k in range(3)]
    assert [c.client_id for c in configs] == ["gw-0", "gw-1", "gw-2"]
    assert [c.http_port for c in configs] == [9200, 9201, 9202]
    assert [c.store for c in configs] == [f"chdb:///data/vi/worker-{k}" for k in range(3)]
    assert {c.share_group for c in configs} == {"vehicle-ingest"}
    assert {c.tags_interval_s for c in configs} == {0}  # shards: tags would see part of each fleet
    server = [worker_config(GatewayConfig(workers=2, store="http://ch:8123/vi", tags_interval_s=60), k) for k in (0, 1)]
    assert [c.store for c in server] == ["http://ch:8123/vi"] * 2
    assert [c.tags_interval_s for c in server] == [60, 0]  # one tag engine per store


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=30) as r:
        return json.loads(r.read())


def _wait_union(ports: list[int], messages: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            parts = [_stats(p) for p in ports]
        except OSError:
            parts = []
        if (parts and sum(p["messages"] for p in parts) >= messages) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    union = {k: sum(p[k] for p in parts) for k in ("messages", "samples", "events", "value_sum", "rejected")}
    union["per_worker"] = [p["messages"] for p in parts]
    return union


@pytest.mark.timeout(240)
def test_two_workers_split_the_stream_and_a_killed_worker_loses_nothing(broker: Mosquitto, rig) -> None:
    gw = rig.gateway(broker.url, "--workers", "2", "--batch-linger-ms", "50")
    deadline = time.monotonic() + 60
    while len(_children(gw.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    victim = _children(gw.process.pid)[0]
    spec = LoadSpec(vehicles=400, rate=200, hz=2, signals=4, duration_s=6, connections=2)
    killer = threading.Timer(2.5, os.kill, (victim, signal.SIGKILL))
    killer.start()
    result = _load(spec, broker.url)
    killer.join()
    assert victim not in _children(gw.process.pid)  # the supervisor replaced it
    union = _wait_union([gw.http_port, gw.http_port + 1], result.totals.messages)
    assert all(n > 0 for n in union["per_worker"]), union  # the broker split the stream
    _assert_stored_exactly(union, result)


def test_unacked_window_holds_even_when_the_broker_overruns_it(broker: Mosquitto, rig) -> None:
    """Gateway memory is bounded by Receive Maximum whatever the broker does (mosquitto 2.0.11 overruns it)."""
    gw = rig.gateway(broker.url, "--receive-max", "100", "--batch-max-messages", "25", "--batch-linger-ms", "20")
    spec = LoadSpec(vehicles=200, rate=1000, hz=1, signals=12, duration_s=2, connections=2, events_per_hour=0)
    peak, done = [0.0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], metric(gw, "vehicle_ingest_unacked_messages"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = _load(spec, broker.url)
        stats = gw.wait_stored(result.totals.messages)
    finally:
        done.set()
        watcher.join()
    assert 0 < peak[0] <= 100
    _assert_stored_exactly(stats, result)
