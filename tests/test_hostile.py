"""Hostile input through a real mosquitto and a real gateway process.

tests/test_rejections.py proves one message per rejection reason; tests/test_codec_parity.py
proves the decoders agree on hostile bytes. This module adds the attacker's classes:
msgpack bombs, NaN and infinities, extreme timestamps, sequence-number games, oversize
payloads and hostile topics, each sent in one stream between valid messages, each
dead-lettered with its reason and counted; a flood of bombs leaves the gateway's memory
bounded; a topic that is not UTF-8 never passes the broker, and the gateway's own topic
parser rejects one anyway.
"""

from __future__ import annotations

import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from tests.helpers import now_ms, raw_message, speed_message
from tests.rig import Rig
from vehicle_ingest.codec import decode
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.simulators.fleet import SimMessage
from vehicle_ingest.simulators.publisher import publish
from vehicle_ingest.validate import parse_topics

pytestmark = pytest.mark.integration

MAX_PAYLOAD = 65_536
BASE = now_ms() - 60_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[GatewayProcess]:
    with Rig(tmp_path_factory.mktemp("hostile")) as rig:
        gw = rig.gateway(
            rig.broker().url,
            "--max-payload-bytes",
            str(MAX_PAYLOAD),
            # A small unacked window: a flood must be throttled by the broker, not buffered by us.
            "--receive-max",
            "200",
            "--batch-max-messages",
            "200",
        )
        yield gw
        assert gw.stop() == 0


# --- hostile payloads, built by hand (msgpack-python refuses to write most of them)


def _header(vin: str, seq: int, base: int, kind: int = 1) -> bytes:
    """fixarray(6) + the five header fields; the body (field 6) follows."""
    return b"\x96" + b"".join(msgpack.packb(x) for x in (1, kind, vin, seq, base))


def block_head(count: int = 1) -> bytes:
    """array(1) of blocks, block = fixarray(5): signal id 1 (speed), scale_exp -1, count."""
    return b"\x91\x95\x01\xff" + msgpack.packb(count)


F64 = struct.Struct(">d")


def f64(x: float) -> bytes:
    return b"\xcb" + F64.pack(x)


def hostile(vin: str) -> dict[str, tuple[bytes, str]]:
    """Class name -> (payload, expected rejection reason)."""
    valid = speed_message(vin, 1).payload
    h = _header(vin, 2, BASE)
    return {
        "array32_top_level": (b"\xdd\xff\xff\xff\xff" + b"\x00" * 16, "malformed"),
        "array32_blocks": (h + b"\xdd\xff\xff\xff\xff\x95", "malformed"),
        "map32_body": (h + b"\xdf\xff\xff\xff\xff", "malformed"),
        "str32_vin": (b"\x96\x01\x01\xdb\xff\xff\xff\xff" + b"A" * 17, "malformed"),
        "bin32_timestamps": (h + block_head(3) + b"\xc6\xff\xff\xff\xff\x00\x00", "malformed"),
        "count_65535_short_bins": (h + block_head(65535) + b"\xc4\x01\x00\xc4\x01\x00", "malformed"),
        "deep_nesting": (h + b"\x91" * 50_000, "malformed"),
        "deep_nesting_top_level": (b"\x91" * 60_000, "malformed"),
        "truncated_half": (valid[: len(valid) // 2], "malformed"),
        "truncated_last_byte": (valid[:-1], "malformed"),
        "trailing_garbage": (valid + b"\xc1", "malformed"),
        "nan_seq": (b"\x96\x01\x01" + msgpack.packb(vin) + f64(float("nan")) + msgpack.packb(BASE), "malformed"),
        "inf_base_ts": (b"\x96\x01\x01" + msgpack.packb(vin) + b"\x02" + f64(float("inf")), "malformed"),
        "neg_inf_base_ts": (b"\x96\x01\x01" + msgpack.packb(vin) + b"\x02" + f64(float("-inf")), "malformed"),
        "nan_scale_exp": (h + b"\x91\x95\x01" + f64(float("nan")) + b"\x01\xc4\x01\x00\xc4\x01\x00", "malformed"),
        "float_count": (h + b"\x91\x95\x01\xff" + f64(1.0) + b"\xc4\x01\x00\xc4\x01\x00", "malformed"),
        "ts_epoch_zero": (speed_message(vin, 3, base_ts=0).payload, "timestamp_skew"),
        "ts_year_10889": (speed_message(vin, 4, base_ts=(1 << 48) - 100_000).payload, "timestamp_skew"),
        "ts_negative_base": (b"\x96\x01\x01" + msgpack.packb(vin) + b"\x02" + msgpack.packb(-1), "malformed"),
        "oversize_by_one": (valid + b"\x00" * (MAX_PAYLOAD + 1 - len(valid)), "oversize"),
        "oversize_1mb": (b"\xdd\xff\xff\xff\xff" * 200_000, "oversize"),
        "empty_payload": (b"", "malformed"),
    }


def test_hostile_payloads_are_what_the_test_says():
    """Guard the table: the decoder agrees with every expected decode-level reason."""
    for name, (payload, reason) in hostile("SMXH0STXLE0000001").items():
        status = decode([payload], MAX_PAYLOAD).messages.status[0]
        if reason in ("malformed", "oversize"):
            assert status != 0, name
        else:
            assert status == 0, name


def _counter(metrics: str, name: str, label: str = "") -> float:
    pattern = rf"^vehicle_ingest_{name}_total{re.escape(label)} (\S+)$"
    match = re.search(pattern, metrics, re.M)
    return float(match.group(1)) if match else 0.0


def _metrics(gw: GatewayProcess) -> str:
    return gw.get("/metrics")[1].decode()


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.25)


def test_every_class_rejected_with_its_reason_between_valid_messages(gateway):
    names = sorted(hostile("SMXH0STXLE0000001"))
    stream: list[SimMessage] = []
    expected: dict[str, str] = {}
    for i, name in enumerate(names):
        vin = f"SMXH0ST{i:010d}"
        payload, reason = hostile(vin)[name]
        bad = raw_message(f"vi/v1/{vin}/signals", payload)
        stream += [speed_message(vin, 100), bad, speed_message(vin, 101)]
        expected[bad.topic] = reason
    before = _metrics(gateway)
    assert publish(stream, gateway.mqtt_url).messages == len(stream)

    def letters() -> dict[str, str]:
        rows = gateway.sql("SELECT topic, reason FROM dead_letters FINAL WHERE topic LIKE 'vi/v1/SMXH0ST%'")
        return dict(rows)

    _wait(lambda: len(letters()) == len(names))
    assert letters() == expected
    stored = gateway.sql("SELECT vin, count(DISTINCT seq) FROM signals WHERE vin LIKE 'SMXH0ST%' GROUP BY vin")
    assert sorted(stored) == sorted([f"SMXH0ST{i:010d}", 2] for i in range(len(names))), "valid neighbours stored"
    want = {reason: list(expected.values()).count(reason) for reason in set(expected.values())}

    def counted() -> dict[str, float]:
        # The counters move when the batch's outcome is recorded, after its dead letters are readable.
        after = _metrics(gateway)
        return {
            reason: _counter(after, "messages_rejected", f'{{reason="{reason}"}}')
            - _counter(before, "messages_rejected", f'{{reason="{reason}"}}')
            for reason in want
        }

    _wait(lambda: counted() == want, timeout=10)
    assert counted() == want
    assert gateway.get("/healthz")[0] == 200


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


def _flood(gateway: GatewayProcess, vin: str, round_no: int, bombs: int) -> None:
    """`bombs` unique ~60 kB bombs (none collapses into another's dead letter), a valid message after every 30th."""
    heads = [b"\xdd\xff\xff\xff\xff", b"\x91" * 8, b"\xc6\xff\xff\xff\xff"]
    stream = []
    for i in range(bombs):
        body = heads[i % 3] + (round_no * bombs + i).to_bytes(4, "big") + b"\x91" * 60_000
        stream.append(raw_message(f"vi/v1/{vin}/signals", body))
        if i % 30 == 29:
            stream.append(speed_message(vin, 1000 * round_no + i))
    assert publish(stream, gateway.mqtt_url, inflight=100).messages == len(stream)
    done = bombs * (round_no + 1)
    _wait(lambda: gateway.sql(f"SELECT count() FROM dead_letters FINAL WHERE vin = '{vin}'") == [[done]], 180)
    valid = (bombs // 30) * (round_no + 1)
    _wait(lambda: gateway.sql(f"SELECT count(DISTINCT seq) FROM signals WHERE vin = '{vin}'") == [[valid]], 60)


def test_flood_of_bombs_keeps_memory_bounded_and_valid_traffic_flowing(gateway):
    """Three floods of 1000 bombs (60 MB each): RSS settles after the first instead of growing with
    the volume, because the unacked window (receive_max 200) throttles the broker."""
    vin = "SMXF10XDB0MBS0001"
    rss = [_rss_kib(gateway.process.pid) / 1024]
    for round_no in range(3):
        _flood(gateway, vin, round_no, 1000)
        rss.append(_rss_kib(gateway.process.pid) / 1024)
    print("gateway RSS MiB before and after each flood of 1000 bombs:", [round(x) for x in rss])
    assert gateway.sql(f"SELECT count() FROM dead_letters FINAL WHERE vin = '{vin}'") == [[3000]]
    assert gateway.sql(f"SELECT count(DISTINCT seq) FROM signals WHERE vin = '{vin}'") == [[99]]
    assert rss[3] - rss[1] < 120, f"RSS kept growing with the flood: {rss}"
    assert rss[3] - rss[0] < 400, f"RSS grew more than the window allows: {rss}"
    assert gateway.get("/readyz")[0] == 200


def test_duplicated_regressing_and_reused_sequence_numbers(gateway):
    vin = "SMXSECGAMES000001"
    first, older = speed_message(vin, 50), speed_message(vin, 40)
    dup = raw_message(first.topic, first.payload)  # the same bytes again: a redelivery or a replay
    reused = speed_message(vin, 50, n=3)  # same identity (vin, 50), other content
    before = _metrics(gateway)
    publish([first, dup, older, dup], gateway.mqtt_url)
    _wait(lambda: gateway.sql(f"SELECT count(DISTINCT seq) FROM signals WHERE vin = '{vin}'") == [[2]])
    publish([reused], gateway.mqtt_url)
    label = '{reason="seq_reused"}'
    seen = _counter(before, "messages_rejected", label)
    _wait(lambda: _counter(_metrics(gateway), "messages_rejected", label) > seen)
    after = _metrics(gateway)
    assert gateway.sql(f"SELECT seq, count() FROM signals WHERE vin = '{vin}' GROUP BY seq ORDER BY seq") == [
        [40, 10],
        [50, 10],
    ], "a regressing seq is a new message (late delivery); a duplicate is stored once; a reuse never"
    assert _counter(after, "messages_duplicate") - _counter(before, "messages_duplicate") == 2
    assert _counter(after, "messages_rejected", label) - _counter(before, "messages_rejected", label) == 1
    letters = gateway.sql(f"SELECT reason, seq FROM dead_letters FINAL WHERE vin = '{vin}'")
    assert letters == [["seq_reused", 50]]


def test_identity_rejections_have_their_own_metric(gateway):
    before = _metrics(gateway)
    bad_vin = speed_message("SMXIIIIIIIIIIIIII", 1)  # I is not a VIN letter
    forged = speed_message("SMXF0RGEDVEH00001", 1, topic_vin="SMXVICTIMVEH00001")
    publish([bad_vin, forged], gateway.mqtt_url)
    label_invalid, label_mismatch = '{kind="invalid_vin"}', '{kind="vin_mismatch"}'
    _wait(lambda: _counter(_metrics(gateway), "identity_violations", label_mismatch) > 0)
    after = _metrics(gateway)
    for label in (label_invalid, label_mismatch):
        assert _counter(after, "identity_violations", label) - _counter(before, "identity_violations", label) == 1


def test_overlong_topics_are_bad_topics(gateway):
    """Topics of a subscribed shape (vi/v1/+/signals, events, can) with an overlong or non-ASCII VIN level are
    dead-lettered.

    Other stream levels (vi/v1/<vin>/signalsxxx..., vi/v1/<vin>/receipt) and deeper topics
    (vi/v1/<vin>/signals/...) never reach the gateway: they do not match its subscriptions.
    """
    vin = "SMXL0NGT0P1C00001"
    payload = speed_message(vin, 1).payload
    topics = [
        f"vi/v1/{vin}{'X' * 200}/signals",  # over the parser's 128-byte limit
        f"vi/v1/{vin}/signals{'x' * 60_000}",  # ~60 kB, near MQTT's 65535-byte topic limit
        f"vi/v1/{vin[:10]}\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9/signals",  # 17 characters, not ASCII
    ]
    publish([raw_message(t, payload) for t in topics] + [speed_message(vin, 2)], gateway.mqtt_url)

    def letters() -> list[list[str]]:
        return gateway.sql(f"SELECT topic, reason FROM dead_letters FINAL WHERE topic LIKE 'vi/v1/{vin[:10]}%'")

    _wait(lambda: len(letters()) == 2)
    assert sorted(letters()) == sorted([t, "bad_topic"] for t in (topics[0], topics[2]))
    _wait(lambda: gateway.sql(f"SELECT count() FROM signals WHERE vin = '{vin}'") == [[10]])
    assert gateway.sql(f"SELECT seq FROM signals WHERE vin = '{vin}' GROUP BY seq") == [[2]]


def test_non_utf8_topic_is_refused_by_the_broker(gateway):
    """mosquitto closes the connection of a client that publishes a topic that is not UTF-8."""
    vin = "SMXN0NUTF8T0P1C01"
    received_before = _counter(_metrics(gateway), "messages_received")
    disconnected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="non-utf8", protocol=mqtt.MQTTv5)
    reasons: list[str] = []
    client.on_disconnect = lambda _c, _u, _f, rc, _p: (reasons.append(str(rc)), disconnected.set())
    host_port = gateway.mqtt_url.removeprefix("mqtt://").split(":")
    client.connect(host_port[0], int(host_port[1]))
    client.loop_start()
    try:
        # paho encodes str topics itself; its packet writer takes the raw bytes we give it.
        topic = f"vi/v1/{vin[:8]}\xff\xfe{vin[10:]}/signals".encode("latin-1")
        mid = client._mid_generate()
        payload = speed_message(vin, 1).payload
        client._send_publish(mid, topic, payload, 1, False, False, mqtt.MQTTMessageInfo(mid))
        assert disconnected.wait(10), "the broker kept the connection open"
        assert reasons == ["Malformed packet"]
    finally:
        client.loop_stop()
    publish([speed_message(vin, 2)], gateway.mqtt_url)  # the gateway is fine and still receiving
    _wait(lambda: gateway.sql(f"SELECT count(DISTINCT seq) FROM signals WHERE vin = '{vin}'") == [[1]])
    assert gateway.sql(f"SELECT seq FROM signals WHERE vin = '{vin}' GROUP BY seq") == [[2]]
    assert _counter(_metrics(gateway), "messages_received") == received_before + 1


def test_gateway_topic_parser_rejects_undecodable_topics():
    """The gateway's defence if a broker did pass such a topic: mqtt_source decodes with
    'replace' (U+FFFD), and the parser refuses anything but vi/v1/<17 ASCII>/<stream>."""
    vin = "SMXN0NUTF8T0P1C01"
    raw = f"vi/v1/{vin[:8]}".encode() + b"\xff\xfe" + f"{vin[10:]}/signals".encode()
    replaced = raw.decode("utf-8", "replace")
    surrogates = raw.decode("utf-8", "surrogateescape")
    parsed = parse_topics([replaced, surrogates, f"vi/v1/{vin}/signals", "vi/v1/" + "\u0130" * 17 + "/signals"])
    assert parsed.kind.tolist() == [0, 0, 1, 0]
    assert parsed.vin.tolist() == [b"", b"", vin.encode(), b""]


def test_encoder_refuses_nan_and_infinities():
    """NaN and ±inf cannot be carried: values are integers on the wire, and quantize refuses them."""
    from vehicle_ingest.codec import quantize
    from vehicle_ingest.errors import EncodeError

    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(EncodeError, match="not finite"):
            quantize(np.array([1.0, bad]), -1)
