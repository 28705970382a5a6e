"""Fault 2: the broker (mosquitto with persistence) killed and restarted under load.

The promise: the gateway reconnects by itself and resumes its session; every
message the broker still holds after its restart is stored exactly once. What
mosquitto itself loses is what it PUBACKed after its last save of the
persistence file (autosave) and before a kill -9: those messages existed only
in its memory. So does a broker that comes back without the gateway's session:
it PUBACKs with "no matching subscribers" until the gateway subscribes again,
and the gateway must report that (vehicle_ingest_mqtt_sessions_lost_total).
The scenario counts both as broker loss, apart from our loss, and shows that a
graceful stop (SIGTERM, which saves) loses none.
"""

from __future__ import annotations

import re
import time

import pytest

from gateway.broker import Mosquitto
from tests.faults.check import compare, stored_messages
from tests.faults.harness import drain, metric, wait_until
from tests.faults.load import Load

pytestmark = pytest.mark.integration

PREFIX = "BRKR"
AUTOSAVE_S = 1
_SAVED = re.compile(r"^(\d+): Saving in-memory database", re.MULTILINE)


def _last_save_before(broker: Mosquitto, t: float) -> float:
    """Wall-clock second of the broker's last save at or before `t` (its log has whole seconds)."""
    saves = [int(s) for s in _SAVED.findall((broker.workdir / "mosquitto.log").read_text())]
    return float(max((s for s in saves if s <= t), default=0))


def _wait_for_next_save(broker: Mosquitto, timeout: float = 10.0) -> None:
    log = broker.workdir / "mosquitto.log"
    saves = len(_SAVED.findall(log.read_text()))
    wait_until(lambda: len(_SAVED.findall(log.read_text())) > saves, timeout, "mosquitto's next autosave", poll=0.02)


def _restart(broker: Mosquitto, how: str) -> list[tuple[float, float]]:
    """Stop the broker (kill -9 or SIGTERM), start it again on the same port and persistence file.

    Returns the window in which PUBACKed messages may be lost by this stop:
    none for SIGTERM, which saves before exiting. The window ends when the
    new broker starts, not at the kill: the publisher reads the dead broker's
    last PUBACKs from its socket buffer after the process is gone (a run saw
    one counted 70 us after the kill returned), and until the restart every
    PUBACK it counts came from the broker that was killed.
    """
    if how == "kill":
        # Die a moment after a save, as in any crash: what the broker saved must come back; what it
        # PUBACKed since is the broker's loss. (Without this, a short load phase can end before the
        # first autosave, and the scenario would test nothing the broker still holds.)
        _wait_for_next_save(broker)
        time.sleep(0.4)
        broker.kill()
    else:
        broker.stop()
    stopped_at = time.time()
    time.sleep(1.0)
    restarted_at = time.time()
    broker.start()
    return [(_last_save_before(broker, stopped_at), restarted_at)] if how == "kill" else []


@pytest.mark.parametrize("how", ["kill", "term"])
def test_broker_restart_loses_nothing_it_still_holds(rig, scale, record, how):
    broker = rig.broker(persistence=True, autosave_interval_s=AUTOSAVE_S)
    gw = rig.gateway(broker.url)
    load = Load(broker.url, prefix=PREFIX, rate=scale.rate).start()
    windows: list[tuple[float, float]] = []
    try:
        time.sleep(scale.broker_load_s)
        # 1. The broker dies under the connected gateway, which must reconnect by itself.
        windows += _restart(broker, how)
        wait_until(lambda: metric(gw, "vehicle_ingest_mqtt_reconnects_total") >= 1, 40, "the gateway to reconnect")
        time.sleep(scale.broker_load_s)
        reconnects = metric(gw, "vehicle_ingest_mqtt_reconnects_total")
        sessions_lost = metric(gw, "vehicle_ingest_mqtt_sessions_lost_total")
        # 2. The broker dies holding a backlog for the gateway's offline session.
        assert gw.stop() == 0
        phase_2_at = time.time()
        time.sleep(scale.broker_load_s + 2 * AUTOSAVE_S)
        windows += _restart(broker, how)
        gw = rig.gateway(broker.url)
        time.sleep(scale.broker_load_s)
    finally:
        load.stop()
    drain([gw], len(load.acked), timeout=60)
    time.sleep(1.0)
    verdict = compare(
        f"broker {'kill -9' if how == 'kill' else 'SIGTERM'} + restart x2", load.acked, stored_messages([gw], PREFIX)
    )
    verdict.blame_broker(load.acked, windows)
    verdict.notes["gateway_reconnects"] = int(reconnects)
    verdict.notes["gateway_sessions_lost"] = int(sessions_lost)
    verdict.notes["redelivered_duplicates_dropped"] = int(metric(gw, "vehicle_ingest_messages_duplicate_total"))
    record(verdict)
    assert gw.stop() == 0
    assert reconnects >= 1, "the gateway did not reconnect to the restarted broker"
    # A broker killed before saving the gateway's session routes messages to no one until the gateway
    # resubscribes: the gateway must have reported that loss (its metric), not stayed silent.
    unrouted_while_connected = sum(1 for e in load.acked.values() if not e.routed and e.acked_at < phase_2_at)
    assert sessions_lost >= (1 if unrouted_while_connected else 0), verdict.line()
    assert verdict.lost == verdict.duplicated == verdict.wrong == 0, verdict.line()
    if how == "term":
        assert verdict.broker_lost == 0 and verdict.exact, verdict.line()
