"""Plain-Python readers of wire format v1: msgpack elements, bins by mode, the payload header.

The reference twins' one copy, shared by the signals, events and CAN
reference parsers. It shares no code with the numba readers and does not use
msgpack-python, so a parity test compares two independent readings of
schemas/WIRE_FORMAT.md.

Reading order is the order of the spec: the first problem met left to right
rejects the message, and its offset is where the element that failed starts
(a msgpack object header, or the first byte of a varint).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vehicle_ingest.codec._limits import CAN_EXT_ID_LIMIT, CAN_STD_ID_LIMIT, MAX_VARINT_BYTES, TS_LIMIT
from vehicle_ingest.codec._types import FORMAT_VERSION, VIN_LENGTH, Status
from vehicle_ingest.codec._wire import HEADER_FIELDS, BinMode

__all__ = ["Cursor", "Header", "RejectError", "read_bin", "read_bytes", "read_header"]

# msgpack type bytes -> size of the big-endian length/value that follows.
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_SINT = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_ARRAY = {0xDC: 2, 0xDD: 4}
_STR = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_FIXARRAY = range(0x90, 0xA0)  # length in the low 4 bits
_FIXSTR = range(0xA0, 0xC0)  # length in the low 5 bits
_NO_FIX = range(0)  # bin has no fix form


class RejectError(Exception):
    def __init__(self, status: Status, offset: int) -> None:
        super().__init__(status, offset)
        self.status = status
        self.offset = offset


class Cursor:
    """Reads msgpack elements from one payload, raising RejectError(MALFORMED, start)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, offset: int) -> RejectError:
        return RejectError(Status.MALFORMED, offset)

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
                raise RejectError(Status.MALFORMED, first)
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << (7 * k)
            if byte < 0x80:
                break
        yield first, value
    if pos != end:
        raise RejectError(Status.MALFORMED, pos)


def _unzigzag(u: int) -> int:
    return (u >> 1) ^ -(u & 1)


def _valid_can_id(code: int) -> bool:
    """An id code is `id << 1 | extended`: 29 bits for an extended id, 11 for a standard one."""
    return (code >> 1) < (CAN_EXT_ID_LIMIT if code & 1 else CAN_STD_ID_LIMIT)


def read_bin(cur: Cursor, mode: BinMode, count: int, lo: int, hi: int, start: int = 0) -> list[int]:
    """The next bin: `count` varints read by `mode` (not BYTES), every value in [lo, hi).

    Sums (DELTA_OF_DELTA, DELTA) start at `start`.
    """
    out: list[int] = []
    acc, delta = start, 0
    for i, (offset, u) in enumerate(_varints(cur.data, *cur.bin_span(), count)):
        if mode == BinMode.DELTA_OF_DELTA:
            delta = _unzigzag(u) if i < 2 else delta + _unzigzag(u)
            acc += delta
            value = acc
        elif mode == BinMode.DELTA:
            acc += _unzigzag(u)
            value = acc
        elif mode == BinMode.ZIGZAG:
            value = _unzigzag(u)
        else:
            value = u
        if not lo <= value < hi or (mode == BinMode.CAN_ID and not _valid_can_id(u)):
            raise cur.fail(offset)
        out.append(value)
    return out


def read_bytes(cur: Cursor, count: int) -> bytes:
    """The next bin in BYTES mode: exactly `count` bytes."""
    start = cur.pos
    lo, hi = cur.bin_span()
    if hi - lo != count:
        raise cur.fail(start)
    return cur.data[lo:hi]


@dataclass
class Header:
    """The header fields; each stays at its default until it is read, as the message columns report them."""

    kind: int = 0
    vin: bytes = b""
    seq: int = 0
    base_ts: int = 0


def read_header(cur: Cursor, header: Header, kinds: int) -> None:
    """Read the header into `header`, for a decoder accepting the kind bit set `kinds`; the cursor ends at the body."""
    n_fields = cur.array()
    if n_fields == 0:
        raise cur.fail(0)
    # Version before the field count: a later version may have another layout,
    # and must be reported as UNSUPPORTED_VERSION, not MALFORMED.
    version_offset = cur.pos
    if cur.uint() != FORMAT_VERSION:
        raise RejectError(Status.UNSUPPORTED_VERSION, version_offset)
    if n_fields != HEADER_FIELDS:
        raise cur.fail(0)
    kind_offset = cur.pos
    kind = cur.uint()
    if not (kinds >> kind) & 1:
        raise RejectError(Status.UNKNOWN_KIND, kind_offset)
    header.kind = kind
    vin_offset = cur.pos
    vin = cur.raw_str()
    if len(vin) != VIN_LENGTH:
        raise cur.fail(vin_offset)
    header.vin = vin
    header.seq = cur.uint()
    header.base_ts = cur.uint(TS_LIMIT)
