"""Receipts: the gateway tells each head unit which of its messages are stored, after the insert returned.

Pure logic first (payload, ranges, coalescing, the head unit's buffer), then a real broker and
gateway process with receipt-aware publishers.
"""

from __future__ import annotations

import contextlib
import time

import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import metric, now_ms, raw_message, speed_message
from vehicle_ingest.receipts import (
    Receipt,
    ReceiptBook,
    ReceiptError,
    Verdicts,
    decode_receipt,
    encode_receipt,
    message_identity,
    seq_ranges,
)
from vehicle_ingest.simulators.headunit import Outstanding
from vehicle_ingest.simulators.publisher import publish

VIN = "WVWZZZ1JZXW000001"
OTHER = "WVWZZZ1JZXW000002"


def test_a_receipt_round_trips_and_matches_the_spec_layout():
    receipt = Receipt(VIN, ((1, 5), (2**64 - 2, 2**64 - 1)), ((7, "timestamp_skew"),))
    payload = encode_receipt(receipt)
    assert decode_receipt(payload) == receipt
    assert msgpack.unpackb(payload) == [1, 16, VIN, [[1, 5], [2**64 - 2, 2**64 - 1]], [[7, "timestamp_skew"]]]


@pytest.mark.parametrize(
    "value",
    [
        [1, 16, VIN, [[1, 5]]],  # 4 elements
        [2, 16, VIN, [], []],  # version
        [1, 1, VIN, [], []],  # a signals kind
        [1, 16, "SHORT", [], []],
        [1, 16, VIN, [[5, 1]], []],  # a range that ends before it starts
        [1, 16, VIN, [[1]], []],
        [1, 16, VIN, [[-1, 2]], []],
        [1, 16, VIN, [], [[1, 2]]],  # a reason that is not a string
        [1, 16, VIN, [[True, 2]], []],
        {"vin": VIN},
    ],
)
def test_anything_but_a_receipt_is_refused_with_a_reason(value):
    with pytest.raises(ReceiptError):
        decode_receipt(msgpack.packb(value))


@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_never_fails_otherwise(data):
    with contextlib.suppress(ReceiptError):
        decode_receipt(data)


def test_seq_ranges_are_inclusive_ascending_and_disjoint():
    assert seq_ranges(np.array([9, 3, 4, 5, 3, 11, 10, 1], np.uint64)) == [(1, 1), (3, 5), (9, 11)]
    assert seq_ranges(np.array([2**64 - 1, 2**64 - 2], np.uint64)) == [(2**64 - 2, 2**64 - 1)]
    assert seq_ranges(np.zeros(0, np.uint64)) == []


def test_the_book_coalesces_one_receipt_per_vin_and_skips_messages_without_a_vehicle():
    book = ReceiptBook()
    book.add(
        Verdicts(
            np.array([VIN, OTHER, VIN, "", VIN], "S17"),
            np.array([5, 1, 6, 3, 9], np.uint64),
            np.array(["", "", "", "", "timestamp_skew"], object),
        )
    )
    book.add(Verdicts(np.array([VIN], "S17"), np.array([7], np.uint64), np.array([""], object)))
    receipts = {topic: decode_receipt(payload) for topic, payload in book.drain()}
    assert receipts == {
        f"vi/v1/{VIN}/receipt": Receipt(VIN, ((5, 7),), ((9, "timestamp_skew"),)),
        f"vi/v1/{OTHER}/receipt": Receipt(OTHER, ((1, 1),), ()),
    }
    assert len(book) == 0 and list(book.drain()) == []


def test_a_vin_that_settled_a_lot_gets_several_receipts_each_under_the_size_limit():
    book = ReceiptBook()
    scattered = np.arange(0, 2 * 5000, 2, dtype=np.uint64)  # 5,000 one-seq ranges
    book.add(Verdicts(np.full(5000, VIN, "S17"), scattered, np.array([""] * 5000, object)))
    book.add(
        Verdicts(np.full(700, VIN, "S17"), np.arange(1, 1401, 2, dtype=np.uint64), np.full(700, "seq_reused", object))
    )
    payloads = [p for _, p in book.drain()]
    receipts = [decode_receipt(p) for p in payloads]
    assert len(receipts) == 3 and max(len(p) for p in payloads) < 64 * 1024
    assert sorted(s for r in receipts for s, _ in r.stored) == scattered.tolist()
    assert sorted(s for r in receipts for s, _ in r.rejected) == list(range(1, 1401, 2))


def test_a_head_unit_keeps_each_message_until_a_receipt_covers_it():
    buffer = Outstanding()
    messages = [speed_message(VIN, s) for s in (1, 2, 3)] + [speed_message(OTHER, 1)]
    for m in messages:
        assert buffer.sent(m)
    assert not buffer.sent(raw_message(f"vi/v1/{VIN}/signals", b"\xc1"))  # no header: nothing can receipt it
    assert message_identity(messages[1].payload) == (VIN, 2)
    assert buffer.on_receipt(encode_receipt(Receipt(VIN, ((1, 2),), ()))) == 2
    assert buffer.on_receipt(encode_receipt(Receipt(VIN, ((1, 2),), ()))) == 0  # receipted twice: settled once
    assert buffer.on_receipt(b"not a receipt") == 0 and buffer.settled.bad_receipts == 1
    assert len(buffer) == 2
    assert buffer.due(3600) == []
    assert sorted(m.topic for m in buffer.due(0)) == [f"vi/v1/{VIN}/signals", f"vi/v1/{OTHER}/signals"]
    assert buffer.on_receipt(encode_receipt(Receipt(VIN, (), ((3, "seq_reused"),)))) == 1
    assert buffer.settled.rejected == {"seq_reused": 1} and len(buffer.settled.stored) == 2


# -- through a real broker and gateway -------------------------------------------------------------


class _Listener:
    def __init__(self, url_port: int) -> None:
        self.receipts: list[Receipt] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener", protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, m: self.receipts.append(decode_receipt(m.payload))
        self.client.connect("127.0.0.1", url_port)
        self.client.subscribe("vi/v1/+/receipt", qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def settled(self, vin: str) -> set[int]:
        return {s for r in self.receipts if r.vin == vin for a, b in r.stored for s in range(a, b + 1)}

    def rejected(self, vin: str) -> dict[int, str]:
        return {s: why for r in self.receipts if r.vin == vin for s, why in r.rejected}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.integration
def test_the_gateway_receipts_stored_duplicated_and_rejected_messages_but_not_unreadable_ones(rig):
    gw = rig.gateway(rig.broker().url)
    listener = _Listener(int(gw.mqtt_url.rsplit(":", 1)[1]))
    stored = [speed_message(VIN, s) for s in range(1, 41)]
    skewed = speed_message(VIN, 100, base_ts=now_ms() + 86_400_000)
    truncated = raw_message(f"vi/v1/{VIN}/signals", speed_message(VIN, 101).payload[:-3])
    publish([*stored, skewed, truncated, speed_message(OTHER, 7)], gw.mqtt_url)
    deadline = time.monotonic() + 20
    while (len(listener.settled(VIN)) < 40 or not listener.rejected(VIN)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.settled(VIN) == set(range(1, 41)) and listener.settled(OTHER) == {7}
    assert listener.rejected(VIN) == {100: "timestamp_skew"}  # the truncated one has no receipt
    receipts_before = len(listener.receipts)
    publish(stored[:5], gw.mqtt_url)  # a head unit that missed the receipts resends: receipted again
    while len(listener.receipts) == receipts_before and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert listener.receipts[-1] == Receipt(VIN, ((1, 5),), ())
    assert gw.stats()["messages"] == 41
    assert metric(gw, "vehicle_ingest_receipts_published_total") == len(listener.receipts)
    listener.close()
    assert gw.stop() == 0


@pytest.mark.integration
def test_receipts_can_be_switched_off(rig):
    gw = rig.gateway(rig.broker().url, "--receipts", "false")
    listener = _Listener(int(gw.mqtt_url.rsplit(":", 1)[1]))
    publish([speed_message(VIN, s) for s in range(1, 11)], gw.mqtt_url)
    gw.wait_stored(10)
    time.sleep(1.0)  # five receipt intervals
    assert listener.receipts == [] and metric(gw, "vehicle_ingest_receipts_published_total") == 0
    listener.close()
    assert gw.stop() == 0


@pytest.mark.integration
def test_a_receipt_aware_publisher_settles_everything_and_reports_it(rig):
    gw = rig.gateway(rig.broker().url)
    messages = [speed_message(VIN, s) for s in range(1, 201)] + [speed_message(VIN, 500, base_ts=1000)]
    totals = publish(messages, gw.mqtt_url, receipts=True, settle_timeout_s=30)
    assert (totals.messages, totals.rejected, totals.failed) == (201, 1, 0)
    assert totals.samples == 200 * 10 == gw.stats()["samples"]
    assert gw.stop() == 0


@pytest.mark.integration
def test_a_message_whose_receipt_never_came_is_resent_after_the_timeout_and_settled(broker):
    """A stand-in gateway receipts every copy but the first of seq 3: the head unit resends seq 3 and settles it."""
    seen: set[int] = set()
    gateway = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stand-in", protocol=mqtt.MQTTv5)

    def on_message(client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        vin, seq = message_identity(msg.payload)
        if seq == 3 and seq not in seen:
            seen.add(seq)
            return  # this receipt is lost
        client.publish(f"vi/v1/{vin}/receipt", encode_receipt(Receipt(vin, ((seq, seq),), ())), qos=1)

    gateway.on_message = on_message
    gateway.connect("127.0.0.1", broker.port)
    gateway.subscribe("vi/v1/+/signals", qos=1)
    gateway.loop_start()
    time.sleep(0.3)
    try:
        totals = publish([speed_message(VIN, s) for s in range(1, 6)], broker.url, receipts=True, receipt_timeout_s=1.0)
    finally:
        gateway.loop_stop()
        gateway.disconnect()
    assert (totals.messages, totals.failed) == (5, 0)
    assert totals.resent >= 1


@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from([VIN, OTHER, ""]), st.integers(0, 40), st.sampled_from(["", "", "seq_reused"])),
            max_size=30,
        ),
        max_size=4,
    )
)
def test_the_book_receipts_exactly_what_was_settled_per_vin(batches):
    """Whatever the batches (repeats, gaps, rejections, unnamed topics): per VIN the receipts cover exactly
    the stored seqs as maximal ranges, and list exactly the rejected (seq, reason) pairs."""
    book, stored, rejected = ReceiptBook(), {}, {}
    for batch in batches:
        vins = np.array([v for v, _, _ in batch], "S17")
        seqs = np.array([s for _, s, _ in batch], np.uint64)
        book.add(Verdicts(vins, seqs, np.array([r for _, _, r in batch], object)))
        for vin, seq, reason in batch:
            if vin and not reason:
                stored.setdefault(vin, set()).add(seq)
            elif vin:
                rejected.setdefault(vin, set()).add((seq, reason))
    receipts = {decode_receipt(p).vin: decode_receipt(p) for _, p in book.drain()}
    assert set(receipts) == set(stored) | set(rejected)
    for vin, receipt in receipts.items():
        assert receipt.stored == tuple(seq_ranges(np.array(sorted(stored.get(vin, ())), np.uint64)))
        assert set(receipt.rejected) == rejected.get(vin, set())
        assert all(b + 1 < c for (_, b), (c, _) in zip(receipt.stored, receipt.stored[1:], strict=False))
