"""Fault 4: the CDP endpoint down for a long time, across a kill -9 and a graceful restart of the gateway.

The promise: tag changes wait in the outbox (in the store, not in memory), so
no restart loses them; after the endpoint recovers every change is delivered
exactly once (by message id) and, per owner and tag, in transition order.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from tests.faults.check import Verdict
from tests.faults.harness import GW_ID, wait_until
from tests.faults.sink import WebhookEndpoint
from tests.helpers import simulate
from vehicle_ingest.gateway.broker import free_port

pytestmark = pytest.mark.integration

FLEET = ("--vehicles", "12", "--duration", str(40 * 86400), "--sample-hz", "0.05", "--message-s", "600", "--seed", "5")
DAY_MS = 86_400_000
_PENDING_SQL = "SELECT count() FROM tag_history FINAL WHERE message_id NOT IN (SELECT message_id FROM cdp_deliveries)"


def _make_changes(gw, mqtt_url: str, tmp_path) -> dict[str, tuple[str, str, int]]:
    """Fleet → store → two tag runs (adds, then removals 200 days later): the outbox holds both."""
    truth = simulate(mqtt_url, tmp_path / "truth.json", *FLEET, "--owners", str(tmp_path / "owners.csv"))
    gw.post("/api/owners", (tmp_path / "owners.csv").read_bytes())
    gw.wait_stored(truth["messages"])
    for as_of in (truth["as_of_ms"], truth["as_of_ms"] + 200 * DAY_MS):
        gw.post("/api/tags/run", json.dumps({"as_of_ms": as_of}).encode())
    rows = gw.sql("SELECT message_id, owner_id, tag, transition FROM tag_history FINAL")
    return {mid: (owner, tag, int(t)) for mid, owner, tag, t in rows}


def _out_of_order(accepted: list[dict]) -> int:
    """Changes delivered after a later transition of the same (owner, tag)."""
    last: dict[tuple[str, str], int] = {}
    bad = 0
    for change in accepted:
        key = (change["owner_id"], change["tag"])
        if change["transition"] <= last.get(key, -1):
            bad += 1
        last[key] = max(change["transition"], last.get(key, -1))
    return bad


def test_cdp_outage_outbox_survives_restarts_and_delivers_once_in_order(rig, scale, record, tmp_path):
    broker = rig.broker()
    port = free_port()
    flags = (
        "--tags-interval-s",
        "0",
        "--cdp-urls",
        f"webhook+http://127.0.0.1:{port}/hook",
        "--deliver-interval-s",
        "1",
    )
    gw = rig.gateway(broker.url, *flags, client_id=GW_ID)
    changes = _make_changes(gw, broker.url, tmp_path)
    assert Counter(t for _, _, t in changes.values())[1] > 0, "the outbox needs second transitions to check order"
    phase = scale.cdp_outage_s / 3
    endpoint = WebhookEndpoint(port, status=503)
    try:
        time.sleep(phase)  # nothing listens: connection refused
        gw.kill()
        gw = rig.gateway(broker.url, *flags, client_id=GW_ID)
        endpoint.start()  # listening, answering 503
        time.sleep(phase)
        assert gw.stop() == 0
        gw = rig.gateway(broker.url, *flags, client_id=GW_ID)
        time.sleep(phase)
        pending = gw.sql(_PENDING_SQL)[0][0]
        refused = endpoint.refused
        endpoint.status = 200
        recovered = time.monotonic()
        wait_until(lambda: len({c["message_id"] for c in endpoint.accepted}) >= len(changes), 60, "outbox drained")
        recovery_s = time.monotonic() - recovered
        time.sleep(2.0)  # a late re-send would show up as a duplicate now
    finally:
        endpoint.close()
    delivered = Counter(c["message_id"] for c in endpoint.accepted)
    verdict = Verdict(
        scenario=f"CDP outage {scale.cdp_outage_s:.0f}s across kill -9 + SIGTERM restarts",
        acked=len(changes),
        stored=sum(1 for mid in changes if mid in delivered),
        lost=sum(1 for mid in changes if mid not in delivered),
        duplicated=sum(1 for n in delivered.values() if n > 1),
        wrong=_out_of_order(endpoint.accepted) + sum(1 for mid in delivered if mid not in changes),
        notes={"refused_requests": refused, "drained_after_recovery_s": round(recovery_s, 1)},
    )
    record(verdict)
    assert gw.stop() == 0
    assert pending == len(changes), "during the outage, after both restarts, every change still waits in the outbox"
    assert refused > 0
    assert verdict.exact, verdict.line()
