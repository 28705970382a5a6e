"""CAN frame payloads (kind 3): encoder round trip, numba decoder == reference decoder, hostile bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_codec_parity import arr, b, header, leb, uint, zz
from vehicle_ingest.codec import CanBatch, Status, decode, decode_can, decode_can_reference, encode_can
from vehicle_ingest.errors import EncodeError

VIN = "WVWZZZ1JZXW000001"
BASE = 1_795_341_600_000
GOLDEN = Path(__file__).resolve().parents[1] / "schemas" / "golden" / "can_v1.hex"
FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(a: CanBatch, r: CanBatch) -> None:
    for name in ("status", "error_offset", "kind", "vin", "seq", "base_ts", "ts_min", "ts_max", "n_items"):
        np.testing.assert_array_equal(getattr(a.messages, name), getattr(r.messages, name), err_msg=name)
    for name in ("msg", "ts", "bus", "arb_id", "extended", "fd", "dlc", "length", "data_start", "data"):
        np.testing.assert_array_equal(getattr(a.frames, name), getattr(r.frames, name), err_msg=name)


def both(payloads: list[bytes]) -> CanBatch:
    fast, ref = decode_can(payloads), decode_can_reference(payloads)
    assert_same(fast, ref)
    return fast


@st.composite
def frame_sets(draw, max_n: int = 30):
    n = draw(st.integers(1, max_n))
    fd = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ext = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ids = [draw(st.integers(0, (1 << 29) - 1 if e else (1 << 11) - 1)) for e in ext]
    lengths = [draw(st.sampled_from(FD_LENGTHS if f else FD_LENGTHS[:9])) for f in fd]
    data = draw(st.binary(min_size=sum(lengths), max_size=sum(lengths)))
    ts = draw(st.lists(st.integers(BASE - 10**6, BASE + 10**7), min_size=n, max_size=n))
    bus = draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    seq = draw(st.integers(0, 2**64 - 1))
    return seq, ts, bus, ids, ext, fd, lengths, data


def encoded(case) -> bytes:
    seq, ts, bus, ids, ext, fd, lengths, data = case
    return encode_can(VIN, seq, BASE, ts, ids, data, lengths, extended=ext, fd=fd, bus=bus)


@FAST
@given(frame_sets())
def test_round_trip(case):
    seq, ts, bus, ids, ext, fd, lengths, data = case
    out = both([encoded(case)])
    assert out.messages.status.tolist() == [Status.OK]
    assert out.messages.seq[0] == seq and out.messages.n_items[0] == len(ts)
    f = out.frames
    assert f.ts.tolist() == ts and f.bus.tolist() == bus and f.arb_id.tolist() == ids
    assert f.extended.tolist() == ext and f.fd.tolist() == fd and f.length.tolist() == lengths
    assert f.data.tobytes() == data
    assert (out.messages.ts_min[0], out.messages.ts_max[0]) == (min(ts), max(ts))


@FAST
@given(frame_sets(max_n=6), st.data())
def test_every_truncation_and_byte_flip_agree(case, data):
    payload = encoded(case)
    cut = data.draw(st.integers(0, len(payload)))
    pos = data.draw(st.integers(0, len(payload) - 1))
    flipped = bytearray(payload)
    flipped[pos] = data.draw(st.integers(0, 255))
    out = both([payload[:cut], bytes(flipped), payload])
    assert out.messages.status[2] == Status.OK
    if cut < len(payload):
        assert out.messages.status[0] == Status.MALFORMED


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 40))
def test_random_bytes_after_a_can_header(tail, keep):
    prefix = header(kind=3)[: 39 + keep]
    both([prefix + tail, prefix[:39] + tail])


def body(count: int, ts: bytes, bus: bytes, ids: bytes, dlc: bytes, data: bytes, fields: int = 6) -> bytes:
    return header(kind=3) + arr(fields) + uint(count) + b(ts) + b(bus) + b(ids) + b(dlc) + b(data)


GOOD_TS, GOOD_IDS = leb(zz(5)), leb(0x123 << 1)
HEADER_LEN = len(header(kind=3))
HOSTILE = [
    # (payload, status, error offset)
    (body(1, GOOD_TS, b"\x00", GOOD_IDS, b"\x02", b"\xaa\xbb"), Status.OK, -1),
    (body(0, b"", b"", b"", b"", b""), Status.EMPTY, HEADER_LEN),
    (body(1, GOOD_TS, b"\x00", GOOD_IDS, b"\x02", b"\xaa\xbb", fields=5), Status.MALFORMED, HEADER_LEN),
    # an 11-bit id of 2**11 (extended flag clear)
    (body(1, GOOD_TS, b"\x00", leb(1 << 12), b"\x00", b""), Status.MALFORMED, HEADER_LEN + 1 + 1 + 3 + 3 + 2),
    # a 29-bit id of 2**29
    (body(1, GOOD_TS, b"\x00", leb((1 << 30) | 1), b"\x00", b""), Status.MALFORMED, HEADER_LEN + 10),
    # DLC byte with a reserved bit set
    (body(1, GOOD_TS, b"\x00", GOOD_IDS, b"\x22", b""), Status.MALFORMED, HEADER_LEN + 1 + 1 + 3 + 3 + 4 + 2),
    # data bin one byte short of what the DLC declares
    (body(1, GOOD_TS, b"\x00", GOOD_IDS, b"\x03", b"\xaa\xbb"), Status.MALFORMED, HEADER_LEN + 1 + 1 + 3 + 3 + 4 + 3),
    # bus bin with two bytes for one frame
    (body(1, GOOD_TS, b"\x00\x01", GOOD_IDS, b"\x00", b""), Status.MALFORMED, HEADER_LEN + 1 + 1 + 3),
    # FD DLC 15 = 64 bytes
    (body(1, GOOD_TS, b"\x00", GOOD_IDS, b"\x1f", bytes(64)), Status.OK, -1),
    # classic DLC 15 = 8 bytes
    (body(1, GOOD_TS, b"\x00", GOOD_IDS, b"\x0f", bytes(8)), Status.OK, -1),
    # a count beyond 65535
    (header(kind=3) + arr(6) + uint(70000) + b(b"") * 5, Status.MALFORMED, HEADER_LEN + 1),
    # a kind 3 payload is unknown to the signals/events decoder, kinds 1/2 to this one
    (header(kind=1) + arr(0), Status.UNKNOWN_KIND, 2),
]


@pytest.mark.parametrize(("payload", "status", "offset"), HOSTILE)
def test_hostile_payload(payload, status, offset):
    out = both([payload])
    assert (out.messages.status[0], out.messages.error_offset[0]) == (status, offset)


def test_signals_decoder_rejects_kind_3_as_unknown_kind():
    payload = encode_can(VIN, 1, BASE, [BASE], [0x10], b"\x01", [1])
    out = decode([payload])
    assert (out.messages.status[0], out.messages.error_offset[0]) == (Status.UNKNOWN_KIND, 2)


def test_fd_data_length_codes():
    out = both(
        [encode_can(VIN, 1, BASE, [BASE] * 3, [1, 2, 3], bytes(12 + 64 + 5), [12, 64, 5], fd=[True, True, False])]
    )
    assert out.frames.dlc.tolist() == [9, 15, 5]
    assert out.frames.length.tolist() == [12, 64, 5]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"ids": [1 << 11]}, "2\\*\\*11"),
        ({"ids": [1 << 29], "extended": [True]}, "2\\*\\*29"),
        ({"lengths": [9], "data": bytes(9)}, "classic CAN allows 0..8"),
        ({"lengths": [13], "data": bytes(13), "fd": [True]}, "CAN FD allows"),
        ({"data": bytes(3)}, "data holds 3"),
    ],
)
def test_encoder_refuses_what_the_format_cannot_carry(kwargs, problem):
    args = {"ids": [0x100], "lengths": [2], "data": b"\x01\x02", "extended": None, "fd": None} | kwargs
    with pytest.raises(EncodeError, match=problem):
        encode_can(
            VIN, 1, BASE, [BASE], args["ids"], args["data"], args["lengths"], extended=args["extended"], fd=args["fd"]
        )


def golden_payload() -> bytes:
    """The worked example of schemas/WIRE_FORMAT.md section 6."""
    data = bytes.fromhex("e803") + bytes.fromhex("0000803f") + bytes(range(12))
    return encode_can(
        VIN,
        (3 << 32) | 3,
        BASE,
        [BASE, BASE + 10, BASE + 20],
        [0x0C8, 0x18FEF100, 0x123],
        data,
        [2, 4, 12],
        extended=[False, True, False],
        fd=[False, False, True],
        bus=[0, 0, 1],
    )


def test_golden_file_matches_the_encoder_and_decodes():
    assert golden_payload().hex() == "".join(GOLDEN.read_text().split())
    out = both([golden_payload()])
    assert out.frames.arb_id.tolist() == [0x0C8, 0x18FEF100, 0x123]
    assert out.frames.length.tolist() == [2, 4, 12]
