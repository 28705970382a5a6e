"""Fault 2: the broker (mosquitto with persistence) killed and restarted under load.

The promise: the gateway reconnects by itself and resumes its session; every
message the broker still holds after its restart is stored exactly once. What
mosquitto itself loses is what it PUBACKed after its last save of the
persistence file (autosave) and before a kill -9: those messages existed only
in its memory. The scenario counts them as broker loss, apart from our loss,
and shows that a graceful stop (SIGTERM, which saves) loses none.
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


def _restart(broker: Mosquitto, how: str) -> list[tuple[float, float]]:
    """Stop the broker (kill -9 or SIGTERM), start it again on the same port and persistence file.

    Returns the window in which PUBACKed messages may be lost by this stop:
    none for SIGTERM, which saves before exiting.
    """
    if how == "kill":
        broker.kill()
    else:
        broker.stop()
    stopped_at = time.time()  # after the process is gone: no PUBACK can come later
    time.sleep(1.0)
    broker.start()
    return [(_last_save_before(broker, stopped_at), stopped_at)] if how == "kill" else []


@pytest.mark.parametrize("how", ["kill", "term"])
def test_broker_restart_loses_nothing_it_still_holds(rig, scale, record, how):
    if how == "kill" and scale.name == "fast":
        # Broker loss is told from ours by the broker's last save, logged to the whole second; with
        # the fast scale's 1 s phases that attribution is too coarse (a run reported 3 of ~470
        # broker-lost messages as ours). The full matrix runs it with 4 s phases.
        pytest.skip("kill -9 of the broker runs in `make faults` (its loss attribution needs longer phases)")
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
        # 2. The broker dies holding a backlog for the gateway's offline session.
        assert gw.stop() == 0
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
    verdict.notes["redelivered_duplicates_dropped"] = int(metric(gw, "vehicle_ingest_messages_duplicate_total"))
    record(verdict)
    assert gw.stop() == 0
    assert reconnects >= 1, "the gateway did not reconnect to the restarted broker"
    assert verdict.lost == verdict.duplicated == verdict.wrong == 0, verdict.line()
    if how == "term":
        assert verdict.broker_lost == 0 and verdict.exact, verdict.line()
