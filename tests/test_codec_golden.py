"""Golden payloads: the worked examples of schemas/WIRE_FORMAT.md.

Expected values are written out by hand from the spec, not taken from a decoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vehicle_ingest.codec import (
    Kind,
    SignalBlock,
    Status,
    decode,
    decode_reference,
    encode_events,
    encode_signals,
    quantize,
)

GOLDEN = Path(__file__).resolve().parents[1] / "schemas" / "golden"
VIN = "WVWZZZ1JZXW000001"
BASE_TS = 1_795_341_600_000  # 2026-11-22T10:00:00Z
SEQ = (3 << 32) | 1  # boot counter 3, message counter 1

SPEED_TS = [BASE_TS, BASE_TS + 200, BASE_TS + 400, BASE_TS + 601, BASE_TS + 800]
SPEED_KMH = [52.3, 52.5, 52.4, 52.4, 52.9]
DISTANCE_TS = [BASE_TS, BASE_TS + 1000]
DISTANCE_M = [48_211_314.0, 48_211_328.0]

EVENT_TS = [BASE_TS + 120, BASE_TS + 130]
EVENT_TEXTS = ["driver door opened", "ambient: 22.5°C"]

DECODERS = [pytest.param(decode, id="numba"), pytest.param(decode_reference, id="reference")]


def golden(name: str) -> bytes:
    return bytes.fromhex((GOLDEN / name).read_text().strip())


def test_signals_encoder_matches_golden():
    speed = SignalBlock(1, -1, np.array(SPEED_TS), quantize(np.array(SPEED_KMH), -1))
    distance = SignalBlock(2, 0, np.array(DISTANCE_TS), quantize(np.array(DISTANCE_M), 0))
    assert encode_signals(VIN, SEQ, BASE_TS, [speed, distance]) == golden("signals_v1.hex")


def test_events_encoder_matches_golden():
    payload = encode_events(VIN, SEQ + 1, BASE_TS, [1, 2], EVENT_TS, [1, -40], EVENT_TEXTS)
    assert payload == golden("events_v1.hex")


def test_signals_golden_byte_groups():
    """A few byte groups of the worked example, straight from the layout tables."""
    p = golden("signals_v1.hex")
    assert p[:3] == bytes([0x96, 0x01, 0x01])  # fixarray(6), version 1, kind 1
    assert p[3:21] == b"\xb1" + VIN.encode()  # fixstr(17) + VIN
    assert p[21:30] == bytes.fromhex("cf0000000300000001")  # seq as uint64
    assert p[30:39] == bytes.fromhex("cf000001a202b2c500")  # base_ts as uint64
    assert p[39:45] == bytes.fromhex("92 95 01 ff 05 c4".replace(" ", ""))  # 2 blocks; [1, -1, 5, bin8 ...
    # ts codes 0, 200, 0, 1, -2 -> zigzag 0, 400, 0, 2, 3 -> LEB128 00 90 03 00 02 03
    assert p[45:52] == bytes.fromhex("06009003000203")
    # raw 523, +2, -1, 0, +5 -> zigzag 1046, 4, 1, 0, 10 -> LEB128 96 08 04 01 00 0a
    assert p[52:60] == bytes.fromhex("c40696080401000a")
    # block 1: [2, 0, 2, ts: 0 then +1000 (zigzag 2000 = d0 0f), raw 48211314 then +14]
    assert p[60:] == bytes.fromhex("95020002" + "c40300d00f" + "c405e495fd2d1c")


@pytest.mark.parametrize("dec", DECODERS)
def test_signals_golden_decodes(dec):
    batch = dec([golden("signals_v1.hex")])
    m = batch.messages
    assert m.status.tolist() == [Status.OK]
    assert m.error_offset.tolist() == [-1]
    assert m.kind.tolist() == [Kind.SIGNALS]
    assert m.vin.tolist() == [VIN.encode()]
    assert m.seq.tolist() == [12_884_901_889]
    assert m.base_ts.tolist() == [BASE_TS]
    assert m.ts_min.tolist() == [BASE_TS]
    assert m.ts_max.tolist() == [BASE_TS + 1000]
    assert m.n_items.tolist() == [7]
    s = batch.samples
    assert s.msg.tolist() == [0] * 7
    assert s.signal_id.tolist() == [1] * 5 + [2] * 2
    assert s.ts.tolist() == SPEED_TS + DISTANCE_TS
    # raw / 10.0**k is the correctly rounded quotient, so it equals the decimal literal exactly.
    assert s.value.tolist() == SPEED_KMH + DISTANCE_M
    assert len(batch.events) == 0


@pytest.mark.parametrize("dec", DECODERS)
def test_events_golden_decodes(dec):
    batch = dec([golden("events_v1.hex")])
    m = batch.messages
    assert m.status.tolist() == [Status.OK]
    assert m.kind.tolist() == [Kind.EVENTS]
    assert m.seq.tolist() == [SEQ + 1]
    assert (m.ts_min.tolist(), m.ts_max.tolist(), m.n_items.tolist()) == ([BASE_TS + 120], [BASE_TS + 130], [2])
    e = batch.events
    assert e.msg.tolist() == [0, 0]
    assert e.event_id.tolist() == [1, 2]
    assert e.ts.tolist() == EVENT_TS
    assert e.value.tolist() == [1, -40]
    assert e.text.tolist() == EVENT_TEXTS
    assert len(batch.samples) == 0


@pytest.mark.parametrize("dec", DECODERS)
def test_golden_dtypes(dec):
    batch = dec([golden("signals_v1.hex"), golden("events_v1.hex")])
    m, s, e = batch.messages, batch.samples, batch.events
    assert [c.dtype for c in (m.status, m.error_offset, m.kind, m.seq, m.base_ts, m.n_items)] == [
        np.uint8,
        np.int32,
        np.uint8,
        np.uint64,
        np.int64,
        np.int32,
    ]
    assert m.vin.dtype == np.dtype("S17")
    assert [c.dtype for c in (s.msg, s.signal_id, s.ts, s.value)] == [np.int32, np.uint16, np.int64, np.float64]
    assert [c.dtype for c in (e.msg, e.event_id, e.ts, e.value)] == [np.int32, np.uint16, np.int64, np.int64]
    assert e.text.dtype == object
