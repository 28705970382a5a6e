"""Fleet → real mosquitto → gateway → features → tags → CDP file sink, checked against the simulator's truth."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.helpers import simulate

pytestmark = pytest.mark.integration

FLEET = ("--vehicles", "36", "--duration", str(60 * 86400), "--sample-hz", "0.05", "--message-s", "600", "--seed", "3")


def _post(gw, path: str, body: bytes) -> dict:
    request = urllib.request.Request(gw.url + path, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read())


def _precision_recall(got: dict[str, list[str]], want: dict[str, list[str]]) -> tuple[float, float]:
    got_pairs = {(o, t) for o, tags in got.items() for t in tags}
    want_pairs = {(o, t) for o, tags in want.items() for t in tags}
    hits = len(got_pairs & want_pairs)
    return hits / max(len(got_pairs), 1), hits / max(len(want_pairs), 1)


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_tags_from_a_duplicated_reordered_stream_match_the_truth(broker, rig, tmp_path):
    changes_file = tmp_path / "cdp" / "changes.jsonl"
    gw = rig.gateway(
        broker.url, "--tags-interval-s", "0", "--cdp-urls", f"file://{changes_file}", "--deliver-interval-s", "1"
    )
    truth = simulate(
        broker.url, tmp_path / "truth.json", *FLEET, "--owners", str(tmp_path / "owners.csv"), "--duplicate-shuffle"
    )
    assert _post(gw, "/api/owners", (tmp_path / "owners.csv").read_bytes())["loaded"] > 0
    stats = gw.wait_stored(truth["messages"], timeout=180)
    assert (stats["messages"], stats["samples"], stats["events"]) == (
        truth["messages"],
        truth["samples"],
        truth["events"],
    )

    # Evaluated as of the simulator's end, so the windows are the truth's windows.
    as_of = json.dumps({"as_of_ms": truth["as_of_ms"]}).encode()
    report = _post(gw, "/api/tags/run", as_of)
    want = {o: v["tags"] for o, v in truth["owners"].items()}
    got = _post(gw, "/api/tags/show", as_of)
    assert _precision_recall(got, want) == (1.0, 1.0)
    assert report["tags"]["changes"] == sum(len(t) for t in want.values()) > 0

    # Every simulated trip is found, with its odometer distance within 1 %.
    rows = gw.sql(
        "SELECT vin, toUnixTimestamp64Milli(trip_start), distance_km, distance_speed_km "
        "FROM trips FINAL WHERE is_deleted = 0"
    )
    stored = {(vin, start): (km, speed_km) for vin, start, km, speed_km in rows}
    expected = {(vin, t["start_ms"]): t["km"] for vin, trips in truth["trips"].items() for t in trips}
    assert set(stored) == set(expected)
    for key, km in expected.items():
        assert stored[key][0] == pytest.approx(km, rel=0.01, abs=0.002)
        assert stored[key][1] == pytest.approx(km, rel=0.05, abs=0.2)  # integrated speed: the cross-check

    # A second run finds nothing new to deliver.
    assert _post(gw, "/api/tags/run", as_of)["tags"]["changes"] == 0

    # The file sink received every change exactly as enqueued.
    deadline = time.monotonic() + 30
    while len(_jsonl(changes_file)) < report["tags"]["changes"] and time.monotonic() < deadline:
        time.sleep(0.5)
    delivered = _jsonl(changes_file)
    assert len({c["message_id"] for c in delivered}) == report["tags"]["changes"]
    assert all(c["action"] == "added" for c in delivered)
    assert gw.stop() == 0


def test_ingestion_keeps_flowing_while_the_cdp_is_down(broker, rig, tmp_path):
    # Nothing listens on this port: every delivery attempt fails, the outbox grows.
    from vehicle_ingest.gateway.broker import free_port

    dead = f"segment+http://writekey@127.0.0.1:{free_port()}"
    gw = rig.gateway(broker.url, "--tags-interval-s", "1", "--cdp-urls", dead, "--deliver-interval-s", "1")
    truth = simulate(
        broker.url,
        tmp_path / "truth.json",
        "--vehicles",
        "12",
        "--duration",
        str(30 * 86400),
        "--sample-hz",
        "0.05",
        "--message-s",
        "600",
        "--owners",
        str(tmp_path / "owners.csv"),
    )
    _post(gw, "/api/owners", (tmp_path / "owners.csv").read_bytes())
    stats = gw.wait_stored(truth["messages"], timeout=120)
    assert stats["messages"] == truth["messages"] and stats["samples"] == truth["samples"]
    deadline = time.monotonic() + 60  # a tag cycle ran and delivery failed at least once
    while "vehicle_ingest_cdp_requests_total{sink=" not in (metrics := gw.get("/metrics")[1].decode()):
        assert time.monotonic() < deadline, "no delivery attempt within 60 s"
        time.sleep(0.2)
    assert "vehicle_ingest_cdp_requests_total{sink=" in metrics
    assert "vehicle_ingest_tag_changes_total" in metrics
    depth = [line for line in metrics.splitlines() if line.startswith("vehicle_ingest_cdp_outbox_depth{")]
    assert depth and float(depth[0].split()[-1]) > 0
    assert gw.get("/readyz")[0] == 200
    assert gw.stop() == 0
