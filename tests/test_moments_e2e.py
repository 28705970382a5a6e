"""Moments through the real thing: mosquitto, the gateway process, chDB and a Segment-compatible receiver.

A moment is in the outbox before its batch is acked; a gateway killed with -9 before the CDP got
it delivers it after the restart, once, also when the head unit sends the triggering message
again (a duplicate to the pipeline fires the same message id, which the outbox keeps once).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cdp_receiver import Receiver, start_receiver
from tests.helpers import now_ms
from tests.test_moments import volts
from vehicle_ingest.simulators.fleet import SimMessage
from vehicle_ingest.simulators.publisher import publish

pytestmark = pytest.mark.integration

VINS = ("SMXE2E00000000001", "SMXE2E00000000002")


def _message(topic_payload: tuple[str, bytes]) -> SimMessage:
    topic, payload = topic_payload
    return SimMessage(0, topic, payload, 2, 0, 0.0)


def _wait(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_moment_survives_kill_9_before_delivery_and_arrives_once(broker, rig, tmp_path: Path):
    receiver = Receiver(refuse_all=503)  # the CDP is down: the moment waits in the outbox
    httpd = start_receiver(receiver)
    flags = ("--cdp-urls", f"segment+http://key@{receiver.address}", "--deliver-interval-s", "30")
    flags += ("--tags-interval-s", "0")
    try:
        gw = rig.gateway(broker.url, *flags)
        owners = "vin,owner_id,valid_from,drivers\n" + "".join(f"{v},owner-{v[-1]},2020-01-01,\n" for v in VINS)
        assert gw.post("/api/owners", owners.encode())["loaded"] == 2
        trigger = _message(volts(VINS[0], 1, now_ms() - 10_000, [12.5, 11.5]))
        assert publish([trigger], broker.url).failed == 0
        _wait(lambda: gw.sql("SELECT count() FROM tag_history WHERE action = 'fired'") == [[1]])
        [[message_id]] = gw.sql("SELECT message_id FROM tag_history WHERE action = 'fired'")
        gw.kill()  # -9: the CDP never got it

        receiver.refuse_all = None
        gw = rig.gateway(broker.url, *flags)
        assert publish([trigger], broker.url).failed == 0  # the head unit sends it again: a duplicate
        _wait(lambda: receiver.accepted()[message_id] >= 1)

        # Latency on a running gateway: publish → received by the CDP, with the deliverer's interval
        # at 30 s, so only the wake-up on enqueue can make it.
        published = time.monotonic()
        assert publish([_message(volts(VINS[1], 1, now_ms() - 5_000, [12.6, 11.2]))], broker.url).failed == 0
        _wait(lambda: len(receiver.accepted()) == 2)
        assert time.monotonic() - published < 2.0
        time.sleep(1.0)  # anything sent twice would have arrived by now
        assert set(receiver.accepted().values()) == {1}
        assert gw.sql("SELECT count() FROM tag_history WHERE action = 'fired'") == [[2]]
        assert gw.stop() == 0
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_moments_from_a_simulated_fleet_match_the_simulators_truth(broker, rig, tmp_path: Path):
    """Precision and recall 1.0 against the simulator's own plain-Python statement of the moments."""
    from tests.helpers import simulate
    from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
    from vehicle_ingest.owners import write_registry
    from vehicle_ingest.simulators.fleet import FleetSpec, simulate_fleet

    end_ms = now_ms() - 60_000
    days = 20
    spec = FleetSpec(vehicles=24, start_ms=end_ms - days * 86_400_000, duration_s=days * 86_400.0,
                     sample_hz=0.05, seed=5, message_s=600.0)  # fmt: skip
    # The owners are known before the data arrives, as in production: a moment goes to the owner then.
    write_registry(tmp_path / "owners.csv", simulate_fleet(spec, load_signal_catalog(), load_event_catalog()).ownership)
    gw = rig.gateway(broker.url, "--tags-interval-s", "0")
    assert gw.post("/api/owners", (tmp_path / "owners.csv").read_bytes())["loaded"] > 0
    truth = simulate(broker.url, tmp_path / "truth.json", "--vehicles", "24", "--duration", str(days * 86_400),
                     "--sample-hz", "0.05", "--message-s", "600", "--seed", "5", "--end-ms", str(end_ms))  # fmt: skip
    gw.wait_stored(truth["messages"], timeout=180)
    want = {m["message_id"] for m in truth["moments"]}
    _wait(lambda: len(gw.sql("SELECT message_id FROM tag_history WHERE action = 'fired'")) >= len(want), 60)
    got = {r[0] for r in gw.sql("SELECT message_id FROM tag_history WHERE action = 'fired'")}
    kinds = {m["moment"] for m in truth["moments"]}
    assert len(want) >= 10 and len(kinds) >= 3, (len(want), kinds)  # the fleet exercises several moments
    hits = len(got & want)
    assert (hits / max(len(got), 1), hits / max(len(want), 1)) == (1.0, 1.0)
    assert gw.stop() == 0
