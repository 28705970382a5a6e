"""Simulator → real mosquitto → gateway process → embedded store, checked against the simulator's truth."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import metric, simulate, speed_message
from vehicle_ingest.simulators.publisher import publish

pytestmark = pytest.mark.integration


def _assert_matches_truth(stats: dict, truth: dict) -> None:
    assert truth["failed"] == 0
    assert truth["messages"] > 0 and truth["events"] > 0
    assert stats["messages"] == truth["messages"]
    assert stats["samples"] == truth["samples"]
    assert stats["events"] == truth["events"]
    assert stats["rejected"] == 0
    assert stats["value_sum"] == pytest.approx(truth["value_sum"], rel=1e-9)


def test_store_holds_exactly_what_the_broker_acknowledged(broker, rig, tmp_path):
    gw = rig.gateway(broker.url)
    truth = simulate(
        broker.url,
        tmp_path / "truth.json",
        "--vehicles",
        "20",
        "--duration",
        "43200",
        "--sample-hz",
        "0.5",
        "--seed",
        "7",
    )
    stats = gw.wait_stored(truth["messages"])
    _assert_matches_truth(stats, truth)
    assert stats["vehicles"] == 20
    assert gw.stop() == 0


def test_kill9_mid_stream_then_restart_stores_every_sample_once(broker, rig, tmp_path):
    gw = rig.gateway(broker.url)
    sim = simulate(
        broker.url,
        tmp_path / "truth.json",
        "--vehicles",
        "30",
        "--duration",
        "57600",
        "--sample-hz",
        "1",
        "--speedup",
        "3600",
        "--seed",
        "11",
        wait=False,
    )
    for pause in (1.0, 2.0):  # two kills, at different points of the stream
        # On a loaded machine the simulator takes seconds to start: wait for the stream, not the clock.
        deadline = time.monotonic() + 60
        while gw.stats()["messages"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(pause)
        received = gw.stats()["messages"]
        still_publishing = sim.poll() is None
        gw.kill()
        assert received > 0 and still_publishing, "the kill should land mid-stream, after some messages were stored"
        gw = rig.gateway(broker.url)
    assert sim.wait(300) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    stats = gw.wait_stored(truth["messages"])
    _assert_matches_truth(stats, truth)
    assert gw.stop() == 0


def test_sigterm_flushes_acks_and_exits_zero(broker, rig, tmp_path):
    gw = rig.gateway(broker.url, "--batch-linger-ms", "2000")
    messages = [speed_message("SMXSXGTERM0000001", seq) for seq in range(1, 51)]
    totals = publish(messages, broker.url)
    time.sleep(0.3)  # delivered to the gateway, still lingering in its batch
    assert gw.stop() == 0
    # The lingering batch was stored by the stopping gateway, and acked: the
    # broker redelivers nothing to the next session (a missing ack would come
    # back as 50 duplicates within a batch linger of the reconnect).
    again = rig.gateway(broker.url)
    assert again.stats()["messages"] == totals.messages == 50
    time.sleep(2.0)
    stats = again.stats()
    assert stats["messages"] == 50 and stats["samples"] == totals.samples
    metrics = again.get("/metrics")[1].decode()
    assert "vehicle_ingest_messages_received_total 0.0" in metrics
    assert "vehicle_ingest_messages_duplicate_total 0.0" in metrics
    assert again.stop() == 0


def test_redelivered_identity_is_stored_once(broker, rig):
    gw = rig.gateway(broker.url)
    first = [speed_message("SMXDUPLXCATE00001", seq) for seq in range(1, 21)]
    publish(first + first[:10], broker.url)  # the head unit re-sends ten messages
    stats = gw.wait_stored(20)
    time.sleep(1.0)
    stats = gw.stats()
    assert stats["messages"] == 20
    assert stats["samples"] == sum(m.samples for m in first)
    assert "vehicle_ingest_messages_duplicate_total 10.0" in gw.get("/metrics")[1].decode()
    assert gw.stop() == 0


@pytest.mark.parametrize("persistence", [False, True], ids=["broker-forgets", "broker-persists"])
def test_a_session_the_broker_lost_on_restart_is_counted(tmp_path, rig, persistence):
    """A broker restarted without persistence answers our resumed session with session_present=0: counted and
    logged. One that saved (persistence, SIGTERM) resumes it: a reconnect, no loss counted."""
    broker = rig.broker(persistence=persistence)
    gw = rig.gateway(broker.url)
    broker.stop()
    broker.start()  # same port; with persistence, the session saved on SIGTERM is back
    deadline = time.monotonic() + 30
    while metric(gw, "vehicle_ingest_mqtt_reconnects_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(gw, "vehicle_ingest_mqtt_reconnects_total") == 1
    assert metric(gw, "vehicle_ingest_mqtt_sessions_lost_total") == (0 if persistence else 1)
    assert gw.stop() == 0
    log = (tmp_path / "gateway.log").read_text()
    assert ("holds no session for client id" in log) == (not persistence)
