"""Fault 2: the broker (mosquitto with persistence, as deployed) killed and restarted under load.

The promise: the gateway reconnects by itself and resumes its session, and every message the
head units sent is stored exactly once. mosquitto loses what it PUBACKed after its last save of
the persistence file (autosave) and before a kill -9: those messages existed only in its memory.
Receipt-aware head units keep every message until a receipt covers it and resend the rest after
reconnecting, so that loss never reaches the store (`acked_in_loss_windows` counts what was at
risk). A broker that comes back without the gateway's session PUBACKs "no matching subscribers"
until the gateway subscribes again, and the gateway reports that
(vehicle_ingest_mqtt_sessions_lost_total).
"""

from __future__ import annotations

import random
import re
import time

import pytest

from tests.faults.check import compare, stored_messages
from tests.faults.harness import GW_ID, drain, metric, wait_until
from tests.faults.load import Load
from tests.rig import Rig
from vehicle_ingest.gateway.broker import Mosquitto

pytestmark = pytest.mark.integration

PREFIX = "BRKR"
AUTOSAVE_S = 1
_SAVED = re.compile(r"^(\d+): Saving in-memory database", re.MULTILINE)


def _last_save_before(broker: Mosquitto, t: float) -> float:
    """Wall-clock second of the broker's last save at or before `t` (its log has whole seconds)."""
    saves = [int(s) for s in _SAVED.findall(_log(broker))]
    return float(max((s for s in saves if s <= t), default=0))


def _log(broker: Mosquitto) -> str:
    return (broker.workdir / "mosquitto.log").read_text()


def _wait_for_next_save(broker: Mosquitto, timeout: float = 10.0, poll: float = 0.02) -> float:
    """Wait for mosquitto's next autosave; returns the last time its log did not show it yet.

    That time is at or before the save (tighter than the log's whole second), so
    a PUBACK counted before it was of a message the save holds.
    """
    not_yet = time.time()
    saves = len(_SAVED.findall(_log(broker)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(poll)
        read_at = time.time()
        if len(_SAVED.findall(_log(broker))) > saves:
            return not_yet
        not_yet = read_at
    raise AssertionError(f"mosquitto did not autosave within {timeout:.0f}s")


def _sessions(rig: Rig) -> dict[str, int]:
    """How the gateways' connections found their session, from their log ("session new" / "session resumed")."""
    log = (rig.workdir / "gateway.log").read_text()
    return {kind: log.count(f"session {kind}") for kind in ("new", "resumed")}


def _restart(broker: Mosquitto, how: str, kill_delays: list[float]) -> list[tuple[float, float]]:
    """Stop the broker (kill -9 or SIGTERM), start it again on the same port and persistence file.

    Returns the window in which PUBACKed messages may be lost by this stop:
    none for SIGTERM, which saves before exiting. The window ends when the
    new broker starts, not at the kill: the publisher reads the dead broker's
    last PUBACKs from its socket buffer after the process is gone (a run saw
    one counted 70 us after the kill returned), and until the restart every
    PUBACK it counts came from the broker that was killed.
    """
    if how == "kill":
        # Die at a random moment before the next autosave (>= 1 s later at autosave_interval 1): what it saved
        # must come back, what it PUBACKed since is its loss. Waiting for a save first also makes sure
        # a short load phase cannot end before the broker ever saved the gateway's session.
        saved_by = _wait_for_next_save(broker)
        kill_delays.append(round(random.uniform(0.05, 0.9), 2))
        time.sleep(kill_delays[-1])
        broker.kill()
    else:
        broker.stop()
    stopped_at = time.time()
    time.sleep(1.0)
    restarted_at = time.time()
    broker.start()
    if how != "kill":
        return []
    # Both are lower bounds of a save; the later one bounds the last save before the kill.
    return [(max(saved_by, _last_save_before(broker, stopped_at)), restarted_at)]


@pytest.mark.parametrize("how", ["kill", "term"])
def test_broker_restart_loses_nothing_it_still_holds(rig, scale, record, how):
    broker = rig.broker(persistence=True, autosave_interval_s=AUTOSAVE_S)
    gw = rig.gateway(broker.url, client_id=GW_ID)
    load = Load(broker.url, prefix=PREFIX, rate=scale.rate, receipt_timeout_s=scale.receipt_timeout_s).start()
    windows: list[tuple[float, float]] = []
    kill_delays: list[float] = []  # seconds after an autosave
    try:
        time.sleep(scale.broker_load_s)
        # 1. The broker dies under the connected gateway, which must reconnect by itself.
        windows += _restart(broker, how, kill_delays)
        wait_until(lambda: metric(gw, "vehicle_ingest_mqtt_reconnects_total") >= 1, 40, "the gateway to reconnect")
        time.sleep(scale.broker_load_s)
        reconnects = metric(gw, "vehicle_ingest_mqtt_reconnects_total")
        sessions_lost = metric(gw, "vehicle_ingest_mqtt_sessions_lost_total")
        # 2. The broker dies holding a backlog for the gateway's offline session.
        assert gw.stop() == 0
        time.sleep(scale.broker_load_s + 2 * AUTOSAVE_S)
        windows += _restart(broker, how, kill_delays)
        gw = rig.gateway(broker.url, client_id=GW_ID)
        time.sleep(scale.broker_load_s)
    finally:
        load.stop()
    drain([gw], len(load.truth), timeout=60)
    time.sleep(1.0)
    verdict = compare(
        f"broker {'kill -9' if how == 'kill' else 'SIGTERM'} + restart x2", load.truth, stored_messages([gw], PREFIX)
    )
    verdict.blame_broker(load.acked, windows)
    # What the broker could have lost (PUBACKed after its last save): the head units kept it, resent it.
    verdict.notes["acked_in_loss_windows"] = sum(
        1 for e in load.acked.values() if any(lo <= e.acked_at <= hi for lo, hi in windows)
    )
    verdict.head_units(load.unreceipted, load.resent)
    if kill_delays:
        verdict.notes["kills_after_save_s"] = "/".join(f"{d:.2f}" for d in kill_delays)
    verdict.notes["gateway_reconnects"] = int(reconnects)
    verdict.notes["gateway_sessions_lost"] = int(sessions_lost)
    verdict.notes["redelivered_duplicates_dropped"] = int(metric(gw, "vehicle_ingest_messages_duplicate_total"))
    record(verdict)
    assert gw.stop() == 0
    assert reconnects >= 1, "the gateway did not reconnect to the restarted broker"
    # Every kill follows a save that holds the gateway's session, so the broker must resume it both
    # times (under the connected gateway, and for the restarted one) and route every message to it.
    assert _sessions(rig) == {"new": 1, "resumed": 2}, _sessions(rig)
    assert sessions_lost == 0 and verdict.broker_unrouted == 0, verdict.line()
    # Receipt-aware head units resend what the broker lost: nothing is lost end to end, kill -9 or not.
    assert verdict.exact, verdict.line()
