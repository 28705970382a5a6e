"""The loop closed end to end: fleet + marketing side → real mosquitto → gateway → `vehicle-ingest campaigns`.

`simulate --campaigns` publishes the fleet phase by phase, runs the gateway's tag cycles on its days and
posts exposures as a CDP would; the campaigns' true uplift (simulators/campaigns.py) must lie inside the
95 % interval the gateway reports, the zero-effect campaign's interval must hold 0, and exposures
delivered again must change nothing. (Coverage over many seeds is tests/test_campaigns_stats.py's.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import simulate

pytestmark = pytest.mark.integration

FLEET = ("--vehicles", "40", "--duration", str(45 * 86400), "--sample-hz", "0.05", "--message-s", "1800", "--seed", "1")


def _campaigns(gw) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "vehicle_ingest.gateway.cli", "campaigns", "--json", "--gateway", gw.url],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_simulated_campaigns_true_uplift_lies_inside_the_reported_intervals(broker, start_gateway, tmp_path):
    gw = start_gateway(broker.url, "--tags-interval-s", "0")
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
