"""A poison tag change through a real gateway: quarantined, everything else delivered once, then released.

Real mosquitto, a real gateway process on an embedded store, a simulated fleet, and a real
Segment-compatible receiver (tests/cdp_receiver.py) that first is down (503), then refuses one
chosen change with 400, then accepts it. `--deliver-interval-s 3600`: only the tag run's and the
release's wake-ups can start a delivery round, so the test fails if either does not wake delivery.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cdp_receiver import Receiver, start_receiver
from tests.helpers import simulate
from vehicle_ingest.cdp import change_message_id

pytestmark = pytest.mark.integration

FLEET = ("--vehicles", "6", "--duration", str(20 * 86400), "--sample-hz", "0.05", "--message-s", "600", "--seed", "5")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(refuse_all=503)  # the CDP is down while the tags run
    httpd = start_receiver(state)
    yield state
    httpd.shutdown()
    httpd.server_close()


def _sample(scrape: str, name: str, sink: str) -> float:
    """One labelled sample; a missing one fails (a renamed metric must not read as 0)."""
    series = f'{name}{{sink="{sink}"}} '
    for line in scrape.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series.strip()} not in the gateway's /metrics")


def _wait(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return result


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vehicle_ingest.gateway.cli", "cdp", *args], capture_output=True, text=True
    )


def test_a_refused_change_is_quarantined_listed_and_released_while_the_rest_flows(broker, rig, tmp_path, receiver):
    sink = f"segment:http://{receiver.address}"
    gw = rig.gateway(
        broker.url,
        *("--tags-interval-s", "0", "--deliver-interval-s", "3600", "--cdp-timeout-s", "5"),
        *("--cdp-urls", f"segment+http://writekey@{receiver.address}"),
    )

    def gauges() -> tuple[float, float]:
        scrape = gw.get("/metrics")[1].decode()
        return _sample(scrape, "vehicle_ingest_cdp_outbox_depth", sink), _sample(
            scrape, "vehicle_ingest_cdp_quarantine_depth", sink
        )

    def counters() -> tuple[float, float]:
        scrape = gw.get("/metrics")[1].decode()
        return _sample(scrape, "vehicle_ingest_cdp_changes_delivered_total", sink), _sample(
            scrape, "vehicle_ingest_cdp_changes_quarantined_total", sink
        )

    truth = simulate(broker.url, tmp_path / "truth.json", *FLEET, "--owners", str(tmp_path / "owners.csv"))
    gw.post("/api/owners", (tmp_path / "owners.csv").read_bytes())
    gw.wait_stored(truth["messages"])
    as_of = json.dumps({"as_of_ms": truth["as_of_ms"]}).encode()
    tags = gw.post("/api/tags/show", as_of)
    expected = sorted(change_message_id(owner, tag, "added", 0) for owner, ts in tags.items() for tag in ts)
    assert len(expected) >= 8, tags
    poison = expected[len(expected) // 2]
    receiver.poison = {poison}

    assert gw.post("/api/tags/run", as_of)["tags"]["changes"] == len(expected)
    # The CDP is down: every scrape from now on must show every change waiting, none quarantined.
    assert gauges() == (len(expected), 0)
    _wait(lambda: len(receiver.statuses()) >= 2, "two refused delivery attempts")
    assert set(receiver.statuses()) == {503} and gauges() == (len(expected), 0)

    receiver.refuse_all = None  # up again, but it refuses the poison change
    _wait(lambda: gauges() == (0, 1), "the poison change in quarantine and nothing else pending")
    accepted = receiver.accepted()
    assert sorted(accepted) == [m for m in expected if m != poison] and set(accepted.values()) == {1}
    assert counters() == (len(expected) - 1, 1)

    listed = _cli("quarantine", "--gateway", gw.url, "--json")
    assert listed.returncode == 0, listed.stderr
    [held] = json.loads(listed.stdout)["quarantined"]
    owner, tag = next((o, t) for o, ts in tags.items() for t in ts if change_message_id(o, t, "added", 0) == poison)
    assert (held["message_id"], held["owner_id"], held["tag"], held["action"]) == (poison, owner, tag, "added")
    assert (held["sink"], held["status"]) == (sink, "400")
    assert json.loads(held["answer"]) == {"error": f"invalid traits in {poison}"}
    table = _cli("quarantine", "--gateway", gw.url, "--sink", sink).stdout.splitlines()
    assert len(table) == 2 and table[1].startswith(f"{poison}\t{owner}\t{tag}\tadded\t{sink}\t400\t")

    both = urllib.request.Request(gw.url + "/api/cdp/release", data=b'{"message_ids": ["x"], "all": true}')
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(both, timeout=30)
    assert refused.value.code == 400
    assert json.loads(refused.value.read()) == {"error": "give message_ids or all: true (exactly one)"}

    receiver.poison = set()  # the CDP was fixed
    unknown = _cli("release", "no-such-change", "--gateway", gw.url)
    assert unknown.returncode == 1 and unknown.stderr.strip() == "vehicle-ingest: not quarantined: no-such-change"
    released = _cli("release", poison, "--gateway", gw.url)
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout) == {"released": [{"message_id": poison, "sink": sink}], "not_quarantined": []}
    _wait(lambda: receiver.accepted()[poison] == 1 and gauges() == (0, 0), "the released change delivered")
    accepted = receiver.accepted()
    assert sorted(accepted) == expected and set(accepted.values()) == {1}  # every change exactly once
    assert counters() == (len(expected), 1)
    assert json.loads(_cli("quarantine", "--gateway", gw.url, "--json").stdout) == {"quarantined": []}
    assert gw.stop() == 0
