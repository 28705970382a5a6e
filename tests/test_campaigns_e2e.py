"""The loop closed end to end: fleet + marketing side → real mosquitto → gateway → `vehicle-ingest campaigns`.

`simulate --campaigns` publishes the fleet phase by phase, runs the gateway's tag cycles on its days and
posts exposures as a CDP would; the campaigns' true uplift (simulators/campaigns.py) must lie inside the
95 % interval the gateway reports, the zero-effect campaign's interval must hold 0. On the same gateway:
exposures delivered again change nothing, hostile requests are refused with a reason, an erased owner
leaves the measurement. (Coverage over many seeds is tests/test_campaigns_stats.py's.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.helpers import simulate

pytestmark = pytest.mark.integration

TOKEN = "campaign-test-token-0123456789"
MAX_BODY = 1_000_000

END = 1_767_225_600_000  # 2026-01-01: a fixed clock, so fleet, campaigns and intervals are the same every run
FLEET = ("--vehicles", "40", "--duration", str(45 * 86400), "--sample-hz", "0.05", "--message-s", "1800", "--seed", "1",
         "--end-ms", str(END))  # fmt: skip
# The gateway takes data that old: accepted for ten years, raw location kept a day longer (as config check wants).
OLD_DATA = ("--max-past-s", str(3650 * 86400), "--location-retention-days", "3651")


def _campaigns(gw) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "vehicle_ingest.gateway.cli", "campaigns", "--json", "--gateway", gw.url],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _request(gw, path: str, body: bytes | None = None, token: str | None = TOKEN) -> tuple[int, dict]:
    request = urllib.request.Request(gw.url + path, data=body, method="POST" if body is not None else "GET")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text.startswith(b"{") else {"error": text.decode()}


def _sql(gw, query: str) -> list[list]:
    status, answer = _request(gw, "/api/sql", query.encode())
    assert status == 200, answer
    return answer["rows"]


def test_simulated_campaigns_true_uplift_lies_inside_the_intervals(broker, rig, tmp_path, monkeypatch):
    monkeypatch.setenv("VI_API_TOKEN", TOKEN)  # the gateway, `simulate` and `campaigns` all take it from there
    gw = rig.gateway(broker.url, "--tags-interval-s", "0", "--http-max-body-bytes", str(MAX_BODY), *OLD_DATA)
    truth = simulate(broker.url, tmp_path / "truth.json", *FLEET, "--campaigns", "--gateway", gw.url)
    assert truth["failed"] == 0 and set(truth["campaigns"]) == {"voice_tutorial", "service_reminder", "playlist_promo"}

    measured = _campaigns(gw)
    for campaign, want in truth["campaigns"].items():
        got = measured[campaign]
        # The gateway compares exactly the owners the marketing side reached and held out, with their outcomes.
        assert (got["treated"], got["control"]) == (want["treated"], want["control"]), campaign
        assert got["treated_outcome"] == pytest.approx(want["treated_outcome"], abs=1e-6), campaign
        assert got["control_outcome"] == pytest.approx(want["control_outcome"], abs=1e-6), campaign
        assert got["ci_low"] <= want["uplift"] <= got["ci_high"], (campaign, want["uplift"], got)
        assert (got["holdout_exposed"], got["outside_audience"], got["pending"]) == (0, 0, 0)
    assert truth["campaigns"]["playlist_promo"]["uplift"] == 0
    assert measured["playlist_promo"]["ci_low"] <= 0 <= measured["playlist_promo"]["ci_high"]
    assert truth["campaigns"]["voice_tutorial"]["uplift"] > 0 and truth["campaigns"]["service_reminder"]["uplift"] > 0
    print(json.dumps({c: {k: measured[c][k] for k in ("uplift", "ci_low", "ci_high")} | {"true": t["uplift"]}
                      for c, t in truth["campaigns"].items()}))  # fmt: skip
    assert _request(gw, "/api/campaigns") == (200, measured)

    _redelivered_exposures_change_nothing(gw, measured, tmp_path)
    _hostile_requests_are_refused_with_a_reason(gw)
    _an_erased_owner_leaves_the_measurement(gw, measured)


def _redelivered_exposures_change_nothing(gw, measured: dict, tmp_path) -> None:
    query = "SELECT message_id, owner_id, campaign_id, toUnixTimestamp64Milli(exposed_at) FROM exposures"
    rows = [{"message_id": m, "owner_id": o, "campaign_id": c, "exposed_at": int(t)} for m, o, c, t in _sql(gw, query)]
    status, answer = _request(gw, "/api/exposures", json.dumps({"exposures": rows + rows[::-1]}).encode())
    assert status == 200 and (answer["stored"], answer["duplicates"], answer["refused"]) == (0, 2 * len(rows), 0)
    # The same as an export file, with one bad row: good rows go (as duplicates), the bad one is named, exit 1.
    export = tmp_path / "exposures.csv"
    lines = [f"{r['message_id']},{r['owner_id']},{r['campaign_id']},{r['exposed_at']}" for r in rows]
    export.write_text("\n".join(["message_id,owner_id,campaign_id,exposed_at", *lines, "m-bad,owner-1,,0"]) + "\n")
    loaded = subprocess.run(
        [sys.executable, "-m", "vehicle_ingest.gateway.cli", "exposures", str(export), "--gateway", gw.url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert loaded.returncode == 1 and f"line {len(rows) + 2}: missing_campaign_id" in loaded.stderr
    assert json.loads(loaded.stdout)["stored"] == 0 and json.loads(loaded.stdout)["duplicates"] == len(rows)
    assert _request(gw, "/api/campaigns") == (200, measured)  # the route: no process to start each time


def _hostile_requests_are_refused_with_a_reason(gw) -> None:
    body = json.dumps({"batch": []}).encode()
    assert _request(gw, "/api/exposures", body, token=None)[0] == 401
    assert _request(gw, "/api/exposures", body, token="not-the-token-0123456789")[0] == 401
    status, answer = _request(gw, "/api/exposures", b"{not json")
    assert status == 400 and answer["error"]
    assert _request(gw, "/api/exposures", b"[" + b" " * MAX_BODY + b"]")[0] == 413
    hostile = [
        {"type": "track", "event": "Campaign Exposed", "userId": "o" * 5000, "messageId": "h1",
         "timestamp": "2025-01-01T00:00:00Z", "properties": {"campaign_id": "voice_tutorial"}},
        {"type": "track", "event": "Campaign Exposed", "userId": "owner-1", "messageId": "h2" * 20_000,
         "timestamp": "2025-01-01T00:00:00Z", "properties": {"campaign_id": "voice_tutorial"}},
        {"type": "track", "event": "Campaign Exposed", "userId": "owner-1", "messageId": "h3",
         "timestamp": "2025-01-01T00:00:00Z", "properties": {"campaign_id": "voice\u2028tutorial"}},
        [1, 2, 3],
    ]  # fmt: skip
    status, answer = _request(gw, "/api/exposures", json.dumps({"batch": hostile}).encode())
    assert status == 200 and answer["stored"] == 0
    assert [p["reason"] for p in answer["problems"]] == ["bad_owner_id", "oversize", "bad_campaign_id", "malformed"]
    metrics = gw.get("/metrics")[1].decode()
    assert 'vehicle_ingest_exposures_refused_total{reason="oversize"} 1.0' in metrics


def _an_erased_owner_leaves_the_measurement(gw, measured: dict) -> None:
    (owner,) = _sql(gw, "SELECT owner_id FROM exposures WHERE campaign_id = 'voice_tutorial' ORDER BY owner_id")[0]
    assert _request(gw, "/api/erase", json.dumps({"owner": owner}).encode())[0] == 200
    after = _request(gw, "/api/campaigns")[1]
    assert after["voice_tutorial"]["treated"] == measured["voice_tutorial"]["treated"] - 1
    assert _sql(gw, f"SELECT count() FROM exposures WHERE owner_id = '{owner}'") == [[0]]
