"""The numba decoder against the reference decoder, and both against the encoder.

Hostile payloads are built by hand with the small msgpack/LEB128 writers below,
so these tests depend neither on msgpack-python nor on the encoder.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vehicle_ingest.codec import (
    MAX_PAYLOAD_BYTES,
    DecodedBatch,
    SignalBlock,
    Status,
    decode,
    decode_reference,
    encode_events,
    encode_signals,
)
from vehicle_ingest.errors import EncodeError

VIN = "WVWZZZ1JZXW000001"
TS_LIMIT = 1 << 48
RAW_LIMIT = 1 << 53
BASE = 1_795_341_600_000

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- hand-written msgpack and LEB128 writers (independent of the code under test)


def uint(v: int) -> bytes:
    if v < 0x80:
        return bytes([v])
    for tag, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if v < 1 << (8 * size):
            return bytes([tag]) + v.to_bytes(size, "big")
    raise ValueError(v)


def sint(v: int, tag: int = 0xD3) -> bytes:
    size = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}[tag]
    return bytes([tag]) + v.to_bytes(size, "big", signed=True)


def arr(n: int) -> bytes:
    return (
        bytes([0x90 | n])
        if n < 16
        else (b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdd" + n.to_bytes(4, "big"))
    )


def s(data: bytes) -> bytes:
    n = len(data)
    return (bytes([0xA0 | n]) if n < 32 else b"\xd9" + bytes([n]) if n < 256 else b"\xda" + n.to_bytes(2, "big")) + data


def b(data: bytes) -> bytes:
    n = len(data)
    return (b"\xc4" + bytes([n]) if n < 256 else b"\xc5" + n.to_bytes(2, "big")) + data


def leb(u: int) -> bytes:
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def zz(n: int) -> int:
    """Zigzag: 0, -1, 1, -2 ... -> 0, 1, 2, 3 ..."""
    return 2 * n if n >= 0 else -2 * n - 1


def lebs(values: list[int]) -> bytes:
    return b"".join(leb(v) for v in values)


def header(kind: int = 1, seq: int = 7, base: int = BASE) -> bytes:
    return arr(6) + uint(1) + uint(kind) + s(VIN.encode()) + uint(seq) + uint(base)


HEADER_LEN = len(header())  # body offset of the default header


def block(sid: int = 1, exp: int = -1, ts_codes: tuple = (0, 100), raws: tuple = (5, 1)) -> bytes:
    """A block from signed codes: ts codes (t0-base, delta, dods), raw deltas."""
    assert len(ts_codes) == len(raws)
    ts_bin = b(lebs([zz(c) for c in ts_codes]))
    exp_bytes = uint(exp) if exp >= 0 else bytes([exp & 0xFF])  # negative fixint down to -32
    return arr(5) + uint(sid) + exp_bytes + uint(len(raws)) + ts_bin + b(lebs([zz(r) for r in raws]))


def signals(*blocks: bytes, **kw: int) -> bytes:
    return header(1, **kw) + arr(len(blocks)) + b"".join(blocks)


def events_body(ids=(1,), ts_codes=(0,), vals=(0,), texts=(b"x",), count=None) -> bytes:
    count = len(ids) if count is None else count
    return (
        arr(5)
        + uint(count)
        + b(lebs(list(ids)))
        + b(lebs([zz(c) for c in ts_codes]))
        + b(lebs([zz(v) for v in vals]))
        + arr(len(texts))
        + b"".join(s(t) for t in texts)
    )


# --- comparison


def assert_same(a: DecodedBatch, r: DecodedBatch) -> None:
    for part in ("messages", "samples", "events"):
        pa, pr = getattr(a, part), getattr(r, part)
        for name in pa.__dataclass_fields__:
            ca, cr = getattr(pa, name), getattr(pr, name)
            assert ca.dtype == cr.dtype, (part, name)
            assert ca.shape == cr.shape, (part, name)
            if ca.dtype == object:
                assert ca.tolist() == cr.tolist(), (part, name)
            else:
                # Bitwise: -0.0 vs 0.0 or any last-bit difference in values fails here.
                assert ca.tobytes() == cr.tobytes(), (part, name, ca, cr)


def both(payloads: list[bytes], **kw) -> DecodedBatch:
    a = decode(payloads, **kw)
    assert_same(a, decode_reference(payloads, **kw))
    return a


def status_of(payload: bytes, **kw) -> tuple[int, int]:
    m = both([payload], **kw).messages
    return int(m.status[0]), int(m.error_offset[0])


# --- strategies

timestamps = st.integers(0, TS_LIMIT - 1)
raws = st.integers(-RAW_LIMIT + 1, RAW_LIMIT - 1)


@st.composite
def signal_blocks(draw, max_n: int = 40) -> SignalBlock:
    n = draw(st.integers(1, max_n))
    if draw(st.booleans()):  # realistic: regular sampling with jitter, small steps
        period = draw(st.integers(1, 1000))
        jitter = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
        start = draw(st.integers(BASE - 10_000, BASE + 10_000))
        ts = [start + i * period + j for i, j in enumerate(jitter)]
        steps = draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))
        raw = np.cumsum(steps).tolist()
    else:  # anything in range, including extremes
        ts = draw(st.lists(st.one_of(timestamps, st.sampled_from([0, TS_LIMIT - 1])), min_size=n, max_size=n))
        raw = draw(
            st.lists(st.one_of(raws, st.sampled_from([-RAW_LIMIT + 1, RAW_LIMIT - 1, 0])), min_size=n, max_size=n)
        )
    return SignalBlock(
        draw(st.integers(0, 0xFFFF)), draw(st.integers(-12, 12)), np.array(ts, np.int64), np.array(raw, np.int64)
    )


@st.composite
def signal_payloads(draw, max_blocks: int = 4, max_n: int = 40) -> tuple[bytes, int, list[SignalBlock]]:
    blocks = draw(st.lists(signal_blocks(max_n), min_size=1, max_size=max_blocks))
    base = draw(st.one_of(st.just(BASE), timestamps))
    seq = draw(st.integers(0, (1 << 64) - 1))
    return encode_signals(VIN, seq, base, blocks), base, blocks


@st.composite
def event_payloads(draw, max_n: int = 20) -> tuple[bytes, list]:
    n = draw(st.integers(1, max_n))
    ids = draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    ts = draw(st.lists(timestamps, min_size=n, max_size=n))
    vals = draw(st.lists(raws, min_size=n, max_size=n))
    txt = draw(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=30), min_size=n, max_size=n))
    payload = encode_events(VIN, draw(st.integers(0, 1000)), draw(timestamps), ids, ts, vals, txt)
    return payload, list(zip(ids, ts, vals, txt, strict=True))


def scaled(raw: int, exp: int) -> float:
    return float(raw) * 10.0**exp if exp >= 0 else float(raw) / 10.0 ** (-exp)


# --- (a) round trips


@MEDIUM
@given(signal_payloads())
def test_signals_round_trip(case):
    payload, _, blocks = case
    batch = both([payload])
    assert batch.messages.status.tolist() == [Status.OK]
    expected_ts = np.concatenate([blk.ts_ms for blk in blocks])
    expected_val = [scaled(int(r), blk.scale_exp) for blk in blocks for r in blk.raw]
    assert batch.samples.ts.tolist() == expected_ts.tolist()
    assert batch.samples.value.tolist() == expected_val
    assert batch.samples.signal_id.tolist() == [blk.signal_id for blk in blocks for _ in blk.raw]
    assert batch.messages.ts_min[0] == expected_ts.min() and batch.messages.ts_max[0] == expected_ts.max()


@FAST
@given(event_payloads())
def test_events_round_trip(case):
    payload, expected = case
    batch = both([payload])
    assert batch.messages.status.tolist() == [Status.OK]
    e = batch.events
    got = list(zip(e.event_id.tolist(), e.ts.tolist(), e.value.tolist(), e.text.tolist(), strict=True))
    assert got == expected


# --- (b) parity on damaged input


@FAST
@given(st.one_of(signal_payloads(2, 6).map(lambda c: c[0]), event_payloads(4).map(lambda c: c[0])))
def test_every_truncation(payload):
    batch = both([payload[:i] for i in range(len(payload) + 1)])
    status = batch.messages.status.tolist()
    assert status[-1] == Status.OK and all(x == Status.MALFORMED for x in status[:-1])


@MEDIUM
@given(
    signal_payloads().map(lambda c: c[0]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_byte_flips(payload, flips):
    bad = bytearray(payload)
    for pos, value in flips:
        bad[pos % len(bad)] = value
    both([bytes(bad), payload, bytes(bad)])


@MEDIUM
@given(event_payloads().map(lambda c: c[0]), st.integers(0, 10_000), st.integers(0, 255))
def test_event_byte_flips(payload, pos, value):
    bad = bytearray(payload)
    bad[pos % len(bad)] = value
    both([bytes(bad)])


@MEDIUM
@given(
    st.binary(max_size=120),
    st.sampled_from([b"", header(1), header(2), header(1) + arr(1) + arr(5), header(2) + arr(5)]),
)
def test_random_bytes(tail, prefix):
    both([prefix + tail, tail])


@FAST
@given(
    st.lists(
        st.one_of(signal_payloads().map(lambda c: c[0]), st.binary(max_size=60), event_payloads().map(lambda c: c[0])),
        max_size=8,
    )
)
def test_mixed_batches_bad_ones_do_not_disturb_good_ones(payloads):
    batch = both(payloads)
    for i, p in enumerate(payloads):
        alone = decode([p])
        assert batch.messages.status[i] == alone.messages.status[0]
        assert batch.samples.value[batch.samples.msg == i].tobytes() == alone.samples.value.tobytes()
        assert batch.samples.ts[batch.samples.msg == i].tolist() == alone.samples.ts.tolist()
        assert batch.events.text[batch.events.msg == i].tolist() == alone.events.text.tolist()


# --- hostile, hand-built payloads: (payload, status, error_offset) from the spec

B = HEADER_LEN  # offset of the body
V = 4  # offset of the VIN's str header is 3; VIN bytes start here
GOOD_BLOCK = block()
BLOCK_TS_BIN = B + 5  # body: [arr(1)] then the block [arr(5) sid exp count] -> ts bin header
PAD = b"\x00" * 5  # so a 6-element array header is not rejected for want of bytes
HOSTILE = {
    "empty payload": (b"", Status.MALFORMED, 0),
    "not an array": (b"\x81\x01\x01", Status.MALFORMED, 0),
    "empty array": (b"\x90", Status.MALFORMED, 0),
    "array32 of 2**32-1": (b"\xdd\xff\xff\xff\xff\x01", Status.MALFORMED, 0),
    "array16 header cut": (b"\xdc\x00", Status.MALFORMED, 0),
    "version is a str": (arr(6) + s(b"1") + PAD, Status.MALFORMED, 1),
    "version is -1": (arr(6) + b"\xff" + PAD, Status.MALFORMED, 1),
    "version int8 1": (arr(6) + sint(1, 0xD0) + PAD, Status.MALFORMED, 1),
    "version 2, 7 fields": (arr(7) + uint(2) + b"\x00" * 6, Status.UNSUPPORTED_VERSION, 1),
    "version 2**64-1 in array16": (b"\xdc\x00\x06" + uint((1 << 64) - 1) + b"\x00" * 5, Status.UNSUPPORTED_VERSION, 3),
    "version 1, 5 fields": (arr(5) + uint(1) + b"\x01\x01\x01\x01", Status.MALFORMED, 0),
    "kind 3": (arr(6) + uint(1) + uint(3) + b"\x00" * 4, Status.UNKNOWN_KIND, 2),
    "kind 0": (arr(6) + uint(1) + uint(0) + b"\x00" * 4, Status.UNKNOWN_KIND, 2),
    "kind negative": (arr(6) + uint(1) + b"\xfe" + b"\x00" * 4, Status.MALFORMED, 2),
    "vin str32 2**32-1": (arr(6) + uint(1) + uint(1) + b"\xdb\xff\xff\xff\xff" + b"A" * 20, Status.MALFORMED, 3),
    "vin 16 bytes": (arr(6) + uint(1) + uint(1) + s(b"A" * 16) + b"\x00\x00\x90", Status.MALFORMED, 3),
    "vin as bin": (arr(6) + uint(1) + uint(1) + b(b"A" * 17) + b"\x00\x00\x90", Status.MALFORMED, 3),
    "seq negative": (arr(6) + uint(1) + uint(1) + s(VIN.encode()) + sint(-1) + b"\x00\x90", Status.MALFORMED, V + 17),
    "seq is nil": (arr(6) + uint(1) + uint(1) + s(VIN.encode()) + b"\xc0\x00\x90", Status.MALFORMED, V + 17),
    "base_ts 2**48": (header(base=TS_LIMIT) + b"\x90", Status.MALFORMED, V + 18),
    "base_ts float": (
        arr(6) + uint(1) + uint(1) + s(VIN.encode()) + b"\x07\xcb" + b"\x00" * 8 + b"\x90",
        Status.MALFORMED,
        V + 18,
    ),
    "body is a map": (header() + b"\x80", Status.MALFORMED, B),
    "body array32 of 2**32-1": (header() + b"\xdd\xff\xff\xff\xff" + GOOD_BLOCK, Status.MALFORMED, B),
    "body array16 too long": (
        header() + b"\xdc\x00\x02" + GOOD_BLOCK,
        Status.MALFORMED,
        len(header()) + 3 + len(GOOD_BLOCK),
    ),
    "zero blocks": (header() + arr(0), Status.EMPTY, B),
    "zero blocks + trailing byte": (header() + arr(0) + b"\x00", Status.MALFORMED, B + 1),
    "trailing byte": (signals(GOOD_BLOCK) + b"\xc0", Status.MALFORMED, len(signals(GOOD_BLOCK))),
    "block of 4": (signals(arr(4) + GOOD_BLOCK[1:-1]), Status.MALFORMED, B + 1),
    "signal_id 65536": (signals(block(sid=65536)), Status.MALFORMED, B + 2),
    "signal_id negative": (signals(arr(5) + b"\xff" + GOOD_BLOCK[2:]), Status.MALFORMED, B + 2),
    "scale_exp 13": (signals(block(exp=13)), Status.MALFORMED, B + 3),
    "scale_exp -13": (signals(block(exp=-13)), Status.MALFORMED, B + 3),
    "scale_exp uint64 max": (signals(arr(5) + uint(1) + uint((1 << 64) - 1) + GOOD_BLOCK[3:]), Status.MALFORMED, B + 3),
    "scale_exp int64 min": (signals(arr(5) + uint(1) + sint(-(1 << 63)) + GOOD_BLOCK[3:]), Status.MALFORMED, B + 3),
    "scale_exp int16 -12": (signals(arr(5) + uint(1) + sint(-12, 0xD1) + GOOD_BLOCK[3:]), Status.OK, -1),
    "scale_exp uint32 12": (signals(arr(5) + uint(1) + b"\xce\x00\x00\x00\x0c" + GOOD_BLOCK[3:]), Status.OK, -1),
    "count 0": (signals(arr(5) + uint(1) + b"\xff" + uint(0) + b(b"") + b(b"")), Status.MALFORMED, B + 4),
    "count 65536": (signals(arr(5) + uint(1) + b"\xff" + uint(65536) + b(b"") + b(b"")), Status.MALFORMED, B + 4),
    "count negative": (signals(arr(5) + uint(1) + b"\xff" + b"\xff" + b(b"") + b(b"")), Status.MALFORMED, B + 4),
    "ts is a str": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + s(b"\x00") + b(b"\x00")),
        Status.MALFORMED,
        BLOCK_TS_BIN,
    ),
    "ts bin32 2**32-1": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + b"\xc6\xff\xff\xff\xff\x00"),
        Status.MALFORMED,
        BLOCK_TS_BIN,
    ),
    "ts bin too short": (
        signals(arr(5) + uint(1) + b"\xff" + uint(2) + b(b"\x00") + b(b"\x00\x00")),
        Status.MALFORMED,
        BLOCK_TS_BIN + 3,
    ),
    "ts leftover byte": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + b(b"\x00\x00") + b(b"\x00")),
        Status.MALFORMED,
        BLOCK_TS_BIN + 3,
    ),
    "ts 9-byte varint": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + b(b"\x80" * 8 + b"\x00") + b(b"\x00")),
        Status.MALFORMED,
        BLOCK_TS_BIN + 2,
    ),
    "ts 8-byte varint ok": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + b(b"\x80" * 7 + b"\x00") + b(b"\x00")),
        Status.OK,
        -1,
    ),
    "ts varint cut by bin end": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + b(b"\x80") + b(b"\x00")),
        Status.MALFORMED,
        BLOCK_TS_BIN + 2,
    ),
    "ts below 0": (signals(block(ts_codes=(-BASE - 1,), raws=(0,))), Status.MALFORMED, BLOCK_TS_BIN + 2),
    "ts reaches 2**48": (signals(block(ts_codes=(TS_LIMIT - BASE,), raws=(0,))), Status.MALFORMED, BLOCK_TS_BIN + 2),
    "ts 2**48-1 ok": (signals(block(ts_codes=(TS_LIMIT - 1 - BASE,), raws=(0,))), Status.OK, -1),
    "ts dod overflows": (
        signals(block(ts_codes=(0, 1 << 46, 1 << 47), raws=(0, 0, 0))),
        Status.MALFORMED,
        BLOCK_TS_BIN + 2 + 1 + len(leb(zz(1 << 46))),  # the third varint
    ),
    "value 2**53": (signals(block(ts_codes=(0,), raws=(RAW_LIMIT,))), Status.MALFORMED, BLOCK_TS_BIN + 3 + 2),
    "value -(2**53)": (
        signals(block(ts_codes=(0, 0), raws=(-RAW_LIMIT + 1, -1))),
        Status.MALFORMED,
        BLOCK_TS_BIN + 4 + 2 + 8,
    ),
    "value 2**53-1 ok": (signals(block(ts_codes=(0,), raws=(RAW_LIMIT - 1,))), Status.OK, -1),
    "values leftover": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + b(b"\x00") + b(b"\x00\x00")),
        Status.MALFORMED,
        BLOCK_TS_BIN + 6,
    ),
    "values bin32 2**32-1": (
        signals(arr(5) + uint(1) + b"\xff" + uint(1) + b(b"\x00") + b"\xc6\xff\xff\xff\xff\x00"),
        Status.MALFORMED,
        BLOCK_TS_BIN + 3,
    ),
    "values missing": (signals(arr(5) + uint(1) + b"\xff" + uint(1) + b(b"\x00")), Status.MALFORMED, BLOCK_TS_BIN + 3),
    "second block bad": (signals(GOOD_BLOCK, arr(5) + b"\xc0" + PAD), Status.MALFORMED, B + 1 + len(GOOD_BLOCK) + 1),
    # events; the body is [count, ids, ts, values, texts]
    "events ok": (header(2) + events_body(), Status.OK, -1),
    "events body of 4": (header(2) + arr(4) + events_body()[1:], Status.MALFORMED, B),
    "events count 0": (header(2) + events_body((), (), (), ()), Status.EMPTY, B),
    "events count 0 + leftover id": (header(2) + events_body((1,), (), (), (), count=0), Status.MALFORMED, B + 4),
    "events count 0, one text": (header(2) + events_body((), (), (), (b"",), count=0), Status.MALFORMED, B + 8),
    "event id 65536": (header(2) + events_body(ids=(65536,)), Status.MALFORMED, B + 4),
    "event id 65535 ok": (header(2) + events_body(ids=(65535,)), Status.OK, -1),
    "event ts 2**48": (header(2) + events_body(ts_codes=(TS_LIMIT - BASE,)), Status.MALFORMED, B + 7),
    "event value 2**53": (header(2) + events_body(vals=(RAW_LIMIT,)), Status.MALFORMED, B + 10),
    "texts 2 for count 1": (header(2) + events_body(texts=(b"a", b"b")), Status.MALFORMED, B + 11),
    "texts array32 2**32-1": (
        header(2) + events_body()[:-3] + b"\xdd\xff\xff\xff\xff" + s(b"x"),
        Status.MALFORMED,
        B + 11,
    ),
    "text is bin": (header(2) + events_body()[:-3] + arr(1) + b(b"x"), Status.MALFORMED, B + 12),
    "text 256 bytes": (header(2) + events_body(texts=(b"a" * 256,)), Status.MALFORMED, B + 12),
    "text 255 bytes ok": (header(2) + events_body(texts=(b"a" * 255,)), Status.OK, -1),
    "text str32 2**32-1": (header(2) + events_body()[:-2] + b"\xdb\xff\xff\xff\xff" + b"x", Status.MALFORMED, B + 12),
    "text overlong utf-8": (header(2) + events_body(texts=(b"\xc0\x80",)), Status.MALFORMED, B + 12),
    "text surrogate utf-8": (header(2) + events_body(texts=(b"\xed\xa0\x80",)), Status.MALFORMED, B + 12),
    "text past U+10FFFF": (header(2) + events_body(texts=(b"\xf4\x90\x80\x80",)), Status.MALFORMED, B + 12),
    "text cut utf-8": (header(2) + events_body(texts=(b"ok\xe2\x82",)), Status.MALFORMED, B + 12),
    "text 4-byte utf-8 ok": (header(2) + events_body(texts=("🚗 ü €".encode(),)), Status.OK, -1),
    "second text bad utf-8": (
        header(2) + events_body((1, 2), (0, 0), (0, 0), (b"ok", b"\xff")),
        Status.MALFORMED,
        B + 18,
    ),
    "bad utf-8 before trailing": (header(2) + events_body(texts=(b"\xff",)) + b"\x00", Status.MALFORMED, B + 12),
}


@pytest.mark.parametrize(("payload", "status", "offset"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_payload(payload, status, offset):
    assert status_of(payload) == (status, offset)


def test_hostile_batch_parity():
    good = signals(GOOD_BLOCK)
    mixed = [x for p, _, _ in HOSTILE.values() for x in (p, good)]
    batch = both(mixed)
    m = batch.messages
    assert m.status[0::2].tolist() == [status for _, status, _ in HOSTILE.values()]
    assert m.status[1::2].tolist() == [Status.OK] * len(HOSTILE)
    lone = decode([good]).samples
    for i in range(1, len(mixed), 2):
        mine = batch.samples.msg == i
        assert batch.samples.ts[mine].tolist() == lone.ts.tolist()
        assert batch.samples.value[mine].tobytes() == lone.value.tobytes()


def test_wide_encodings_are_accepted():
    """Every msgpack encoding of a type is accepted, not only the shortest one."""
    head = b"\xdc\x00\x06" + b"\xcc\x01" + b"\xcd\x00\x01" + b"\xda\x00\x11" + VIN.encode()
    head += b"\xce\x00\x00\x00\x07" + uint(BASE)
    blk = b"\xdd\x00\x00\x00\x05" + b"\xcf" + (1).to_bytes(8, "big") + sint(-1, 0xD2) + b"\xcd\x00\x02"
    blk += b"\xc5\x00\x03" + leb(zz(0)) + leb(zz(100)) + b"\xc6\x00\x00\x00\x02" + leb(zz(5)) + leb(zz(1))
    batch = both([head + b"\xdc\x00\x01" + blk])
    assert batch.messages.status.tolist() == [Status.OK]
    assert batch.samples.ts.tolist() == [BASE, BASE + 100]
    assert batch.samples.value.tolist() == [0.5, 0.6]

    body = arr(5) + b"\xcc\x01" + b"\xc5\x00\x01\x07" + b"\xc4\x01\x00" + b"\xc4\x01\x03"
    body += b"\xdc\x00\x01" + b"\xd9\x02hi"
    batch = both([header(2) + body])
    assert batch.messages.status.tolist() == [Status.OK]
    e = batch.events
    assert (e.event_id.tolist(), e.ts.tolist(), e.value.tolist(), e.text.tolist()) == ([7], [BASE], [-2], ["hi"])


# --- one explicit example per Status


def test_status_ok():
    assert status_of(signals(GOOD_BLOCK)) == (Status.OK, -1)


def test_status_malformed():
    payload = signals(GOOD_BLOCK)
    # The last bin (values, "c4 02 0a 02") now declares 2 bytes with 1 left: rejected at its header.
    assert status_of(payload[:-1]) == (Status.MALFORMED, len(payload) - 4)


def test_status_unsupported_version():
    assert status_of(arr(6) + uint(2) + header()[2:] + arr(0)) == (Status.UNSUPPORTED_VERSION, 1)


def test_status_unknown_kind():
    assert status_of(header(kind=9) + arr(0)) == (Status.UNKNOWN_KIND, 2)


def test_status_oversize():
    payload = signals(GOOD_BLOCK)
    assert status_of(payload, max_payload_bytes=len(payload) - 1) == (Status.OVERSIZE, 0)
    assert status_of(payload, max_payload_bytes=len(payload)) == (Status.OK, -1)
    assert status_of(b"\x00" * (MAX_PAYLOAD_BYTES + 1)) == (Status.OVERSIZE, 0)


def test_status_empty():
    assert status_of(header() + arr(0)) == (Status.EMPTY, HEADER_LEN)


def test_header_fields_kept_for_rejected_messages():
    """The dead-letter table wants to know whose message it was."""
    m = both([header(seq=(1 << 64) - 1) + arr(1) + b"\xc0"]).messages
    assert (m.status[0], m.kind[0], m.vin[0], m.seq[0], m.base_ts[0]) == (
        Status.MALFORMED,
        1,
        VIN.encode(),
        (1 << 64) - 1,
        BASE,
    )
    assert (m.n_items[0], m.ts_min[0], m.ts_max[0]) == (0, 0, 0)


def test_empty_batch():
    batch = both([])
    assert len(batch.messages) == len(batch.samples) == len(batch.events) == 0


# --- encoder refusals


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_signals("SHORT", 1, BASE, [SignalBlock(1, 0, np.array([BASE]), np.array([1]))]),
        lambda: encode_signals(VIN, -1, BASE, [SignalBlock(1, 0, np.array([BASE]), np.array([1]))]),
        lambda: encode_signals(VIN, 1 << 64, BASE, [SignalBlock(1, 0, np.array([BASE]), np.array([1]))]),
        lambda: encode_signals(VIN, 1, TS_LIMIT, [SignalBlock(1, 0, np.array([BASE]), np.array([1]))]),
        lambda: encode_signals(VIN, 1, BASE, []),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(65536, 0, np.array([BASE]), np.array([1]))]),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(1, 13, np.array([BASE]), np.array([1]))]),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(1, 0, np.array([], np.int64), np.array([], np.int64))]),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(1, 0, np.full(65536, BASE), np.zeros(65536, np.int64))]),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(1, 0, np.array([BASE, BASE]), np.array([1]))]),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(1, 0, np.array([TS_LIMIT]), np.array([1]))]),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(1, 0, np.array([BASE]), np.array([RAW_LIMIT]))]),
        lambda: encode_signals(VIN, 1, BASE, [SignalBlock(1, 0, np.array([BASE]), np.array([1.5]))]),
        lambda: encode_events(VIN, 1, BASE, [65536], [BASE], [0], ["x"]),
        lambda: encode_events(VIN, 1, BASE, [1], [BASE], [0], ["x" * 256]),
        lambda: encode_events(VIN, 1, BASE, [1], [BASE], [0], ["\ud800"]),
        lambda: encode_events(VIN, 1, BASE, [], [], [], []),
        lambda: encode_events(VIN, 1, BASE, [1], [BASE], [-RAW_LIMIT], ["x"]),
    ],
)
def test_encoder_refuses(call):
    with pytest.raises(EncodeError):
        call()


def test_encoder_refuses_oversize_payload():
    n = 65535
    blocks = [SignalBlock(i, 0, np.arange(n) * 1000, np.arange(n) * 1000) for i in range(3)]
    with pytest.raises(EncodeError, match="cap"):
        encode_signals(VIN, 1, 0, blocks)
