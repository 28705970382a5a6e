"""Fault 1: kill -9 of the gateway at random points under load, many times in a row."""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.check import compare, stored_messages
from tests.faults.harness import GW_ID, drain, metric
from tests.faults.load import Load

pytestmark = pytest.mark.integration

PREFIX = "KXLL"
SEED = 20261122


def test_repeated_kill9_under_load_stores_every_acked_message_once(rig, scale, record):
    rng = random.Random(SEED)
    broker = rig.broker()
    gw = rig.gateway(broker.url, client_id=GW_ID)
    load = Load(broker.url, prefix=PREFIX, rate=scale.rate, receipt_timeout_s=scale.receipt_timeout_s).start()
    in_flight_at_kill = []
    try:
        for _ in range(scale.kills):
            # Random points: mid-batch, mid-insert, during the replay of the previous kill's backlog.
            time.sleep(rng.uniform(0.1, 1.5))
            in_flight_at_kill.append(metric(gw, "vehicle_ingest_unacked_messages"))
            gw.kill()
            gw = rig.gateway(broker.url, client_id=GW_ID)
    finally:
        load.stop()
    drain([gw], len(load.truth), timeout=120)
    time.sleep(1.0)  # a late redelivery would show up as a duplicate now
    verdict = compare(f"gateway kill -9 x{scale.kills}", load.truth, stored_messages([gw], PREFIX))
    verdict.notes["kills_with_unacked_in_flight"] = sum(1 for n in in_flight_at_kill if n > 0)
    record(verdict.head_units(load.unreceipted, load.resent))
    assert gw.stop() == 0
    assert verdict.exact, verdict.line()
    assert verdict.acked >= scale.rate * scale.kills * 0.3, "the load ran through the kills"
    # The kills landed while the gateway held messages it had not acked yet:
    # otherwise this would only test restarts between batches.
    assert verdict.notes["kills_with_unacked_in_flight"] >= scale.kills // 2
