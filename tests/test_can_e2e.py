"""CAN frames from the simulator → real mosquitto → gateway process → store, exactly once."""

from __future__ import annotations

import time

import pytest

from tests.helpers import simulate

pytestmark = pytest.mark.integration


def _can_totals(gw) -> tuple[int, int, int, float]:
    ((samples, unmapped, messages, value_sum),) = gw.sql(
        "SELECT (SELECT count() FROM signals), (SELECT count() FROM can_signals),"
        " (SELECT count() FROM (SELECT vin, seq FROM signals GROUP BY vin, seq)), (SELECT sum(value) FROM signals)"
    )
    return int(samples), int(unmapped), int(messages), float(value_sum)


def test_simulated_can_frames_land_as_catalog_signals_exactly_once(broker, rig, tmp_path):
    gw = rig.gateway(broker.url)
    end_ms = str(time.time_ns() // 1_000_000 - 10_000)
    args = ("--can", "--vehicles", "4", "--duration", "300", "--message-s", "10", "--seed", "5", "--end-ms", end_ms)
    truth = simulate(broker.url, tmp_path / "truth.json", *args)
    can = truth["can"]
    assert truth["failed"] == 0 and truth["messages"] == can["messages"] > 0
    assert truth["samples"] == can["samples"]  # what the broker acknowledged == what the frames carry
    stats = gw.wait_stored(can["messages"])
    assert stats["rejected"] == 0
    samples, unmapped, messages, value_sum = _can_totals(gw)
    assert (samples, unmapped, messages) == (can["samples"], can["unmapped"], can["messages"])
    assert value_sum == pytest.approx(can["value_sum"], rel=1e-9)

    # The head units resend everything (same seq, same bytes): nothing is stored twice.
    again = simulate(broker.url, tmp_path / "again.json", *args)
    assert again["messages"] == can["messages"]
    metrics = gw.get("/metrics")[1].decode()
    deadline = time.monotonic() + 60
    while f"vehicle_ingest_messages_duplicate_total {float(can['messages'])}" not in metrics:
        assert time.monotonic() < deadline, "redelivered CAN messages were not all seen as duplicates"
        time.sleep(0.25)
        metrics = gw.get("/metrics")[1].decode()
    assert _can_totals(gw)[:3] == (can["samples"], can["unmapped"], can["messages"])
    assert f"vehicle_ingest_can_frames_unknown_id_total {float(2 * can['unknown_frames'])}" in metrics
    assert gw.stop() == 0
