"""Faults 6 and 7: the gateway down for a while with vehicles publishing; a vehicle offline, then uploading.

Both are ordinary in a fleet: a gateway upgrade or crash loop, a car in an underground car park.
The head units keep every message until a receipt covers it, so whatever the broker queued,
dropped or never saw in the meantime, every message ends up stored exactly once.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.check import compare, stored_messages
from tests.faults.harness import GW_ID, drain, metric, wait_until
from tests.faults.load import Load

pytestmark = pytest.mark.integration


def test_gateway_down_while_vehicles_publish(rig, scale, record):
    broker = rig.broker()
    gw = rig.gateway(broker.url, client_id=GW_ID)
    load = Load(broker.url, prefix="GDWN", rate=scale.rate, receipt_timeout_s=scale.receipt_timeout_s).start()
    try:
        wait_until(lambda: gw.stats()["messages"] > 0, 30, "first messages stored")
        assert gw.stop() == 0
        down_at = load.sent
        time.sleep(scale.gateway_down_s)  # vehicles keep publishing; nothing is stored, nothing receipted
        kept_while_down = load.unreceipted
        sent_while_down = load.sent - down_at
        gw = rig.gateway(broker.url, client_id=GW_ID)
        time.sleep(scale.gateway_down_s / 4)
    finally:
        load.stop(settle_s=120)
    drain([gw], len(load.truth), timeout=60)
    verdict = compare(f"gateway down {scale.gateway_down_s:.0f}s", load.truth, stored_messages([gw], "GDWN"))
    verdict.notes.update(sent_while_down=sent_while_down, kept_by_head_units_while_down=kept_while_down)
    record(verdict.head_units(load.unreceipted, load.resent))
    assert gw.stop() == 0
    assert sent_while_down >= scale.rate * scale.gateway_down_s * 0.5, "the vehicles published while it was down"
    assert kept_while_down >= sent_while_down * 0.9, "head units keep what no receipt covered"
    assert verdict.exact, verdict.line()


def test_vehicle_offline_then_uploads_its_backlog(rig, scale, record):
    broker = rig.broker()
    gw = rig.gateway(broker.url, client_id=GW_ID)
    load = Load(broker.url, prefix="VFLN", rate=scale.rate, receipt_timeout_s=scale.receipt_timeout_s).start()
    try:
        wait_until(lambda: gw.stats()["messages"] > 0, 30, "first messages stored")
        load.offline()
        offline_at, stored_at = load.sent, gw.stats()["messages"]
        time.sleep(scale.vehicle_offline_s)  # driving through a car park: producing into the buffer only
        backlog = load.sent - offline_at
        assert gw.wait_stored(stored_at) and load.unreceipted >= backlog
        load.online()
        time.sleep(scale.vehicle_offline_s / 4)
    finally:
        load.stop(settle_s=120)
    drain([gw], len(load.truth), timeout=60)
    verdict = compare(f"vehicle offline {scale.vehicle_offline_s:.0f}s", load.truth, stored_messages([gw], "VFLN"))
    verdict.notes.update(
        backlog_uploaded=backlog, duplicates_dropped=int(metric(gw, "vehicle_ingest_messages_duplicate_total"))
    )
    record(verdict.head_units(load.unreceipted, load.resent))
    assert gw.stop() == 0
    assert backlog >= scale.rate * scale.vehicle_offline_s * 0.5, "the vehicles produced while offline"
    assert verdict.exact, verdict.line()
