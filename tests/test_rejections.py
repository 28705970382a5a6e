"""Every rejection reason: a dead-letter row with the reason, a counter, a healthy gateway, valid traffic kept."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from tests.helpers import now_ms, raw_message, speed_message
from tests.rig import Rig
from vehicle_ingest.codec import encode_events
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.simulators.fleet import SimMessage
from vehicle_ingest.simulators.publisher import publish

pytestmark = pytest.mark.integration

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[GatewayProcess]:
    with Rig(tmp_path_factory.mktemp("rejections")) as rig:
        gw = rig.gateway(
            rig.broker().url, "--max-payload-bytes", str(MAX_PAYLOAD), "--max-past-s", "86400", "--max-future-s", "60"
        )
        yield gw
        assert gw.stop() == 0


def _with_version(payload: bytes, version: int) -> bytes:
    assert payload[1] == 1  # fixarray(6), then positive fixint version 1
    return payload[:1] + bytes([version]) + payload[2:]


def _events(vin: str, seq: int, event_id: int) -> bytes:
    t = now_ms() - 1000
    return encode_events(
        vin, seq, t, np.array([event_id], np.uint16), np.array([t], np.int64), np.array([0], np.int64), [""]
    )


BAD: dict[str, Callable[[str], SimMessage]] = {
    "malformed": lambda vin: raw_message(f"vi/v1/{vin}/signals", b"\x96\x01\x01\xc1\xff"),
    "unsupported_version": lambda vin: raw_message(
        f"vi/v1/{vin}/signals", _with_version(speed_message(vin, 900).payload, 9)
    ),
    "oversize": lambda vin: speed_message(vin, 901, n=MAX_PAYLOAD),
    "unknown_signal": lambda vin: speed_message(vin, 902, signal_id=65_000),
    "unknown_event": lambda vin: raw_message(f"vi/v1/{vin}/events", _events(vin, 903, 65_000)),
    "value_out_of_range": lambda vin: speed_message(vin, 904, values=np.array([10**7] * 10)),
    "invalid_vin": lambda vin: speed_message("SMXIIIIIIIIIIIIII", 905),
    "vin_mismatch": lambda vin: speed_message(vin, 906, topic_vin="SMXTHERVEHXCLE001"),
    "kind_mismatch": lambda vin: raw_message(f"vi/v1/{vin}/events", speed_message(vin, 907).payload),
    "bad_topic": lambda vin: raw_message(f"vi/v1/{vin}X/signals", speed_message(vin, 908).payload),
    "timestamp_skew": lambda vin: speed_message(vin, 909, base_ts=now_ms() + 86_400_000),
    "timestamp_skew_past": lambda vin: speed_message(vin, 910, base_ts=now_ms() - 3 * 86_400_000),
}


def _counter(metrics: str, reason: str) -> float:
    match = re.search(rf'vehicle_ingest_messages_rejected_total\{{reason="{reason}"\}} (\S+)', metrics)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("case", sorted(BAD))
def test_rejected_with_reason_and_stream_keeps_flowing(gateway, case):
    reason = case.removesuffix("_past")
    vin = f"SMXREJ{sorted(BAD).index(case):011d}"
    before = _counter(gateway.get("/metrics")[1].decode(), reason)
    good_before = [speed_message(vin, seq) for seq in (1, 2)]
    good_after = [speed_message(vin, seq) for seq in (3, 4)]
    bad = BAD[case](vin)
    totals = publish([*good_before, bad, *good_after], gateway.mqtt_url)
    assert totals.messages == 5

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stored = gateway.sql(f"SELECT count(DISTINCT seq), count() FROM signals WHERE vin = '{vin}'")[0]
        if stored[0] == 4 and _counter(gateway.get("/metrics")[1].decode(), reason) > before:
            break
        time.sleep(0.2)
    assert stored == [4, 40], "the valid messages around the bad one are all stored"
    assert _counter(gateway.get("/metrics")[1].decode(), reason) == before + 1
    letters = gateway.sql(
        "SELECT reason, topic, payload_size FROM dead_letters FINAL WHERE topic = "
        f"'{bad.topic}' AND reason = '{reason}'"
    )
    assert [row[0] for row in letters] == [reason]
    assert letters[0][2] == len(bad.payload)
    assert gateway.get("/healthz")[0] == 200
    assert gateway.get("/readyz")[0] == 200
