"""Reference decoder for wire format v1: the executable spec, in plain Python.

It shares no parsing code with the numba decoder and does not use
msgpack-python, so the parity test compares two independent readings of
schemas/WIRE_FORMAT.md. It is slow on purpose: one Python object per sample.

Reading order is the order of the spec: the first problem met left to right
rejects the message, and `error_offset` is the offset where the element that
failed starts (a msgpack object header, or the first byte of a varint).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from vehicle_ingest.codec._limits import (
    MAX_COUNT,
    MAX_TEXT_BYTES,
    MAX_VARINT_BYTES,
    POW10,
    RAW_LIMIT,
    SCALE_EXP_MAX,
    TS_LIMIT,
)
from vehicle_ingest.codec._types import (
    FORMAT_VERSION,
    MAX_PAYLOAD_BYTES,
    VIN_LENGTH,
    DecodedBatch,
    EventColumns,
    Kind,
    MessageColumns,
    SampleColumns,
    Status,
)

__all__ = ["decode_reference"]

HEADER_FIELDS = 6
BLOCK_FIELDS = 5
EVENTS_FIELDS = 5
MAX_ERROR_OFFSET = 2**31 - 1

# msgpack type bytes -> size of the big-endian length/value that follows.
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_SINT = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_ARRAY = {0xDC: 2, 0xDD: 4}
_STR = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_FIXARRAY = range(0x90, 0xA0)  # length in the low 4 bits
_FIXSTR = range(0xA0, 0xC0)  # length in the low 5 bits
_NO_FIX = range(0)  # bin has no fix form


class _RejectError(Exception):
    def __init__(self, status: Status, offset: int) -> None:
        super().__init__(status, offset)
        self.status = status
        self.offset = offset


@dataclass
class _Message:
    """What one payload yields; header fields stay at their defaults until parsed."""

    status: Status = Status.OK
    error_offset: int = -1
    kind: int = 0
    vin: bytes = b""
    seq: int = 0
    base_ts: int = 0
    samples: list[tuple[int, int, float]] = field(default_factory=list)
    events: list[tuple[int, int, int, str]] = field(default_factory=list)


class _Cursor:
    """Reads msgpack elements and varints from one payload, raising _RejectError(MALFORMED, start)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, offset: int) -> _RejectError:
        return _RejectError(Status.MALFORMED, offset)

    def _byte(self, start: int) -> int:
        if self.pos >= len(self.data):
            raise self.fail(start)
        self.pos += 1
        return self.data[self.pos - 1]

    def _big_endian(self, size: int, start: int, signed: bool = False) -> int:
        if self.pos + size > len(self.data):
            raise self.fail(start)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return int.from_bytes(chunk, "big", signed=signed)

    def uint(self, limit: int = 1 << 64) -> int:
        """An unsigned msgpack int (positive fixint, uint8..64) below `limit`."""
        start = self.pos
        tag = self._byte(start)
        if tag <= 0x7F:
            value = tag
        elif tag in _UINT:
            value = self._big_endian(_UINT[tag], start)
        else:
            raise self.fail(start)
        if value >= limit:
            raise self.fail(start)
        return value

    def sint(self, lo: int, hi: int) -> int:
        """Any msgpack int in [lo, hi]; signed encodings are allowed here."""
        start = self.pos
        tag = self._byte(start)
        if tag <= 0x7F:
            value = tag
        elif tag >= 0xE0:
            value = tag - 0x100
        elif tag in _UINT:
            value = self._big_endian(_UINT[tag], start)
        elif tag in _SINT:
            value = self._big_endian(_SINT[tag], start, signed=True)
        else:
            raise self.fail(start)
        if not lo <= value <= hi:
            raise self.fail(start)
        return value

    def _length(self, fix: range, wide: dict[int, int]) -> int:
        """Declared length of an array/str/bin; it may never exceed the bytes left."""
        start = self.pos
        tag = self._byte(start)
        if tag in fix:
            n = tag - fix.start
        elif tag in wide:
            n = self._big_endian(wide[tag], start)
        else:
            raise self.fail(start)
        # An array element takes at least one byte, so this bound is safe for arrays too.
        if n > len(self.data) - self.pos:
            raise self.fail(start)
        return n

    def array(self) -> int:
        return self._length(_FIXARRAY, _ARRAY)

    def raw_str(self) -> bytes:
        n = self._length(_FIXSTR, _STR)
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def bin_span(self) -> tuple[int, int]:
        """(start, end) offsets of a bin's data; the cursor moves past it."""
        n = self._length(_NO_FIX, _BIN)
        self.pos += n
        return self.pos - n, self.pos


def _varints(data: bytes, start: int, end: int, count: int) -> Iterator[tuple[int, int]]:
    """`count` LEB128 varints in data[start:end] as (offset, value); the bytes must be used exactly.

    A generator, so the caller's range check on varint i runs before varint i+1 is read.
    """
    pos = start
    for _ in range(count):
        first = pos
        value = 0
        for k in range(MAX_VARINT_BYTES + 1):
            if k == MAX_VARINT_BYTES or pos >= end:
                raise _RejectError(Status.MALFORMED, first)
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << (7 * k)
            if byte < 0x80:
                break
        yield first, value
    if pos != end:
        raise _RejectError(Status.MALFORMED, pos)


def _unzigzag(u: int) -> int:
    return (u >> 1) ^ -(u & 1)


def _check_ts(t: int, offset: int) -> int:
    if not 0 <= t < TS_LIMIT:
        raise _RejectError(Status.MALFORMED, offset)
    return t


def _check_raw(r: int, offset: int) -> int:
    if not -RAW_LIMIT < r < RAW_LIMIT:
        raise _RejectError(Status.MALFORMED, offset)
    return r


def _scale(raw: int, scale_exp: int) -> float:
    # Division for negative exponents: 1234 / 10.0 is exactly 123.4, 1234 * 0.1 is not.
    return float(raw) * POW10[scale_exp] if scale_exp >= 0 else float(raw) / POW10[-scale_exp]


def _signal_timestamps(data: bytes, span: tuple[int, int], count: int, base_ts: int) -> list[int]:
    """First code is t0 - base_ts, second is the first delta, then deltas of deltas."""
    out = []
    t, delta = base_ts, 0
    for i, (offset, u) in enumerate(_varints(data, *span, count)):
        delta = _unzigzag(u) if i < 2 else delta + _unzigzag(u)
        t = _check_ts(t + delta, offset)
        out.append(t)
    return out


def _signal_raws(data: bytes, span: tuple[int, int], count: int) -> list[int]:
    out = []
    r = 0
    for offset, u in _varints(data, *span, count):
        r = _check_raw(r + _unzigzag(u), offset)
        out.append(r)
    return out


def _signals_body(cur: _Cursor, msg: _Message, body_offset: int) -> None:
    n_blocks = cur.array()
    for _ in range(n_blocks):
        block_start = cur.pos
        if cur.array() != BLOCK_FIELDS:
            raise cur.fail(block_start)
        signal_id = cur.uint(MAX_COUNT + 1)
        scale_exp = cur.sint(-SCALE_EXP_MAX, SCALE_EXP_MAX)
        count_start = cur.pos
        count = cur.uint(MAX_COUNT + 1)
        if count == 0:
            raise cur.fail(count_start)
        ts = _signal_timestamps(cur.data, cur.bin_span(), count, msg.base_ts)
        raws = _signal_raws(cur.data, cur.bin_span(), count)
        msg.samples.extend((signal_id, t, _scale(r, scale_exp)) for t, r in zip(ts, raws, strict=True))
    _finish(cur, body_offset, empty=n_blocks == 0)


def _events_body(cur: _Cursor, msg: _Message, body_offset: int) -> None:
    if cur.array() != EVENTS_FIELDS:
        raise cur.fail(body_offset)
    count = cur.uint(MAX_COUNT + 1)
    ids = []
    for offset, u in _varints(cur.data, *cur.bin_span(), count):
        if u > MAX_COUNT:
            raise cur.fail(offset)
        ids.append(u)
    ts, t = [], msg.base_ts
    for offset, u in _varints(cur.data, *cur.bin_span(), count):
        t = _check_ts(t + _unzigzag(u), offset)
        ts.append(t)
    values = [_check_raw(_unzigzag(u), offset) for offset, u in _varints(cur.data, *cur.bin_span(), count)]
    texts = _texts(cur, count)
    msg.events.extend(zip(ids, ts, values, texts, strict=True))
    _finish(cur, body_offset, empty=count == 0)


def _texts(cur: _Cursor, count: int) -> list[str]:
    array_start = cur.pos
    if cur.array() != count:
        raise cur.fail(array_start)
    out = []
    for _ in range(count):
        start = cur.pos
        raw = cur.raw_str()
        if len(raw) > MAX_TEXT_BYTES:
            raise cur.fail(start)
        try:
            out.append(raw.decode("utf-8"))  # strict: no overlongs, no surrogates, max U+10FFFF
        except UnicodeDecodeError:
            raise cur.fail(start) from None
    return out


def _finish(cur: _Cursor, body_offset: int, empty: bool) -> None:
    """Trailing bytes outrank EMPTY: EMPTY is only said of an otherwise well-formed message."""
    if cur.pos != len(cur.data):
        raise cur.fail(cur.pos)
    if empty:
        raise _RejectError(Status.EMPTY, body_offset)


def _parse(data: bytes, msg: _Message) -> None:
    cur = _Cursor(data)
    n_fields = cur.array()
    if n_fields == 0:
        raise cur.fail(0)
    # Version before the field count: a later version may have another layout,
    # and must be reported as UNSUPPORTED_VERSION, not MALFORMED.
    version_offset = cur.pos
    if cur.uint() != FORMAT_VERSION:
        raise _RejectError(Status.UNSUPPORTED_VERSION, version_offset)
    if n_fields != HEADER_FIELDS:
        raise cur.fail(0)
    kind_offset = cur.pos
    kind = cur.uint()
    if kind not in (Kind.SIGNALS, Kind.EVENTS):
        raise _RejectError(Status.UNKNOWN_KIND, kind_offset)
    msg.kind = kind
    vin_offset = cur.pos
    vin = cur.raw_str()
    if len(vin) != VIN_LENGTH:
        raise cur.fail(vin_offset)
    msg.vin = vin
    msg.seq = cur.uint()
    msg.base_ts = cur.uint(TS_LIMIT)
    body_offset = cur.pos
    body = _signals_body if kind == Kind.SIGNALS else _events_body
    body(cur, msg, body_offset)


def _decode_one(payload: bytes, max_payload_bytes: int) -> _Message:
    msg = _Message()
    try:
        if len(payload) > max_payload_bytes:
            raise _RejectError(Status.OVERSIZE, 0)
        _parse(bytes(payload), msg)
    except _RejectError as rej:
        msg.status, msg.error_offset = rej.status, rej.offset
        msg.samples, msg.events = [], []
    return msg


def decode_reference(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> DecodedBatch:
    """Decode every payload; same output as `decode`, bit for bit."""
    if max_payload_bytes > MAX_ERROR_OFFSET:
        raise ValueError(f"max_payload_bytes must be <= {MAX_ERROR_OFFSET} (error offsets are int32)")
    msgs = [_decode_one(p, max_payload_bytes) for p in payloads]
    return DecodedBatch(_message_columns(msgs), _sample_columns(msgs), _event_columns(msgs))


def _message_columns(msgs: list[_Message]) -> MessageColumns:
    items = [m.samples or m.events for m in msgs]
    times = [[s[1] for s in m.samples] or [e[1] for e in m.events] for m in msgs]
    return MessageColumns(
        status=np.array([m.status for m in msgs], dtype=np.uint8),
        error_offset=np.array([m.error_offset for m in msgs], dtype=np.int32),
        kind=np.array([m.kind for m in msgs], dtype=np.uint8),
        vin=np.array([m.vin for m in msgs], dtype="S17"),
        seq=np.array([m.seq for m in msgs], dtype=np.uint64),
        base_ts=np.array([m.base_ts for m in msgs], dtype=np.int64),
        ts_min=np.array([min(t, default=0) for t in times], dtype=np.int64),
        ts_max=np.array([max(t, default=0) for t in times], dtype=np.int64),
        n_items=np.array([len(i) for i in items], dtype=np.int32),
    )


def _sample_columns(msgs: list[_Message]) -> SampleColumns:
    rows = [(i, *s) for i, m in enumerate(msgs) for s in m.samples]
    return SampleColumns(
        msg=np.array([r[0] for r in rows], dtype=np.int32),
        signal_id=np.array([r[1] for r in rows], dtype=np.uint16),
        ts=np.array([r[2] for r in rows], dtype=np.int64),
        value=np.array([r[3] for r in rows], dtype=np.float64),
    )


def _event_columns(msgs: list[_Message]) -> EventColumns:
    rows = [(i, *e) for i, m in enumerate(msgs) for e in m.events]
    text = np.empty(len(rows), dtype=object)
    text[:] = [r[4] for r in rows]
    return EventColumns(
        msg=np.array([r[0] for r in rows], dtype=np.int32),
        event_id=np.array([r[1] for r in rows], dtype=np.uint16),
        ts=np.array([r[2] for r in rows], dtype=np.int64),
        value=np.array([r[3] for r in rows], dtype=np.int64),
        text=text,
    )
