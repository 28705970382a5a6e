"""numba readers of wire format v1: msgpack elements, LEB128 bins by mode, the payload header.

The one copy that the signals, events and CAN kernels all read with, so every
kind's header and bins are read identically.

numba does no bounds checks: every read below is guarded by an explicit
comparison with the end of what may be read, and every declared length is
checked against the bytes left before it is used.

Readers return (value, next) with next == -1 on failure; the caller reports the
element's start offset. Bin readers return an absolute error offset, -1 when fine.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vehicle_ingest.codec._limits import CAN_EXT_ID_LIMIT, CAN_STD_ID_LIMIT, TS_LIMIT
from vehicle_ingest.codec._types import FORMAT_VERSION, VIN_LENGTH, Status
from vehicle_ingest.codec._wire import HEADER_FIELDS, BinMode

__all__ = [
    "ARRAY",
    "BAD_KIND",
    "BAD_VERSION",
    "BIN",
    "CAN_ID",
    "CAN_ID_LIMIT",
    "DELTA",
    "DELTA_OF_DELTA",
    "MALFORMED",
    "OK",
    "STR",
    "UNSIGNED",
    "ZIGZAG",
    "read_byte_bin",
    "read_header",
    "read_len",
    "read_small_int",
    "read_uint",
    "read_varint_bin",
    "utf8_ok",
    "varint",
]

# numba freezes module-level ints as constants; IntEnum members would be objects.
OK, MALFORMED = int(Status.OK), int(Status.MALFORMED)
BAD_VERSION, BAD_KIND = int(Status.UNSUPPORTED_VERSION), int(Status.UNKNOWN_KIND)
DELTA_OF_DELTA, DELTA, ZIGZAG = int(BinMode.DELTA_OF_DELTA), int(BinMode.DELTA), int(BinMode.ZIGZAG)
UNSIGNED, CAN_ID = int(BinMode.UNSIGNED), int(BinMode.CAN_ID)
ARRAY, STR, BIN = 0, 1, 2  # msgpack families whose length read_len reads
CAN_ID_LIMIT = CAN_EXT_ID_LIMIT << 1  # the `hi` of a CAN_ID bin: codes of 29-bit ids
_INT64_MAX = np.iinfo(np.int64).max
_MAX_KIND = 62  # a kind must fit the accepted-kinds bit set


@njit(cache=True, nogil=True)
def _big_endian(buf: np.ndarray, p: int, size: int, end: int) -> tuple[int, int]:
    """`size` bytes at p as a big-endian int64 (a uint64 >= 2**63 comes out negative)."""
    if p + size > end:
        return 0, -1
    v = 0
    for k in range(size):
        v = (v << 8) | buf[p + k]
    return v, p + size


@njit(cache=True, nogil=True)
def read_uint(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:
    """Positive fixint or uint8..64. A uint64 >= 2**63 reads negative, which every range check rejects."""
    if p >= end:
        return 0, -1
    tag = np.int64(buf[p])
    if tag <= 0x7F:
        return tag, p + 1
    if tag < 0xCC or tag > 0xCF:
        return 0, -1
    return _big_endian(buf, p + 1, 1 << (tag - 0xCC), end)


@njit(cache=True, nogil=True)
def read_small_int(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:
    """Any msgpack int, for range checks only: a uint64 beyond int64 reads as int64 max."""
    if p >= end:
        return 0, -1
    tag = np.int64(buf[p])
    if tag <= 0x7F:
        return tag, p + 1
    if tag >= 0xE0:
        return tag - 0x100, p + 1
    if 0xCC <= tag <= 0xCF:
        v, q = _big_endian(buf, p + 1, 1 << (tag - 0xCC), end)
        return (_INT64_MAX if v < 0 else v), q
    if 0xD0 <= tag <= 0xD3:
        size = 1 << (tag - 0xD0)
        v, q = _big_endian(buf, p + 1, size, end)
        if size < 8 and v >= 1 << (8 * size - 1):
            v -= 1 << (8 * size)  # sign-extend int8/16/32
        return v, q
    return 0, -1


@njit(cache=True, nogil=True)
def read_len(buf: np.ndarray, p: int, end: int, family: int) -> tuple[int, int]:
    """Declared length of an array/str/bin at p, rejected when it exceeds the bytes left.

    An array element takes at least one byte, so the same bound is safe for arrays.
    """
    if p >= end:
        return 0, -1
    tag = np.int64(buf[p])
    size = 0
    n = 0
    if family == ARRAY and 0x90 <= tag <= 0x9F:
        n = tag - 0x90
    elif family == ARRAY and (tag == 0xDC or tag == 0xDD):
        size = 2 if tag == 0xDC else 4
    elif family == STR and 0xA0 <= tag <= 0xBF:
        n = tag - 0xA0
    elif family == STR and 0xD9 <= tag <= 0xDB:
        size = 1 << (tag - 0xD9)
    elif family == BIN and 0xC4 <= tag <= 0xC6:
        size = 1 << (tag - 0xC4)
    else:
        return 0, -1
    q = p + 1
    if size > 0:
        n, q = _big_endian(buf, q, size, end)
        if q < 0:
            return 0, -1
    if n > end - q:
        return 0, -1
    return n, q


@njit(cache=True, nogil=True)
def varint(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:
    """LEB128 at p: at most 8 bytes, all before `end` (the end of the bin).

    Hot loops test the one-byte case inline before calling this: numba does not
    inline calls between jitted functions, and a call per sample costs ~5x.
    """
    v = 0
    for k in range(8):
        if p + k >= end:
            return 0, -1
        b = np.int64(buf[p + k])
        v |= (b & 0x7F) << (7 * k)
        if b < 0x80:
            return v, p + k + 1
    return 0, -1


@njit(cache=True, nogil=True)
def utf8_ok(buf: np.ndarray, p: int, end: int) -> bool:
    """Strict UTF-8 (Unicode table 3-7): no overlongs, no surrogates, nothing past U+10FFFF."""
    while p < end:
        b = buf[p]
        if b < 0x80:
            p += 1
            continue
        lo, hi, n = 0x80, 0xBF, 0
        if 0xC2 <= b <= 0xDF:
            n = 1
        elif 0xE0 <= b <= 0xEF:
            n = 2
            lo = 0xA0 if b == 0xE0 else 0x80
            hi = 0x9F if b == 0xED else 0xBF
        elif 0xF0 <= b <= 0xF4:
            n = 3
            lo = 0x90 if b == 0xF0 else 0x80
            hi = 0x8F if b == 0xF4 else 0xBF
        else:
            return False
        if p + n >= end or not lo <= buf[p + 1] <= hi:
            return False
        for k in range(2, n + 1):
            if not 0x80 <= buf[p + k] <= 0xBF:
                return False
        p += n + 1
    return True


@njit(cache=True, nogil=True, inline="always")
def read_varint_bin(
    buf: np.ndarray,
    p: int,
    end: int,
    count: int,
    mode: int,
    start: int,
    lo: int,
    hi: int,
    write: bool,
    out: np.ndarray,
    o: int,
) -> tuple[int, int, int, int]:
    """A bin of `count` varints read by `mode`, each value in [lo, hi); sums start at `start`.

    (error offset or -1, next position, min, max). Inlined at every call, where `mode` is a
    constant: numba's inlining lets LLVM drop the other modes' branches from the per-item loop.
    """
    n, q = read_len(buf, p, end, BIN)
    if q < 0:
        return p, 0, 0, 0
    p, bin_end = q, q + n
    acc, delta, vmin, vmax = start, 0, hi, lo - 1
    for i in range(count):
        if p < bin_end and buf[p] < 0x80:  # the one-byte case inline: see `varint`
            u, q = np.int64(buf[p]), p + 1
        else:
            u, q = varint(buf, p, bin_end)
            if q < 0:
                return p, 0, 0, 0
        z = (u >> 1) ^ -(u & 1)
        if mode == DELTA_OF_DELTA:
            delta = z if i < 2 else delta + z  # codes 0 and 1 are t0 - base and the first delta
            acc += delta
            v = acc
        elif mode == DELTA:
            acc += z
            v = acc
        elif mode == ZIGZAG:
            v = z
        else:
            v = u
        if v < lo or v >= hi or (mode == CAN_ID and (u & 1) == 0 and u >= (CAN_STD_ID_LIMIT << 1)):
            return p, 0, 0, 0
        if write:
            out[o + i] = v
        vmin, vmax = min(vmin, v), max(vmax, v)
        p = q
    if p != bin_end:
        return p, 0, 0, 0
    return -1, p, vmin, vmax


@njit(cache=True, nogil=True)
def read_byte_bin(buf: np.ndarray, p: int, end: int, count: int) -> tuple[int, int]:
    """A BYTES bin of exactly `count` bytes: (start of its data or -1, next position)."""
    n, q = read_len(buf, p, end, BIN)
    if q < 0 or n != count:
        return -1, 0
    return q, q + n


@njit(cache=True, nogil=True)
def read_header(buf: np.ndarray, start: int, end: int, kinds: int) -> tuple[int, int, int, int, int, int]:
    """The header fields in wire order, for a decoder accepting the kind bit set `kinds`.

    (status, error or body offset, kind, VIN offset, seq, base_ts); the fields read before
    a failure are returned (the others 0, the VIN offset -1), as the message columns report them.
    """
    kind, vin_at, seq = 0, -1, 0
    n_fields, p = read_len(buf, start, end, ARRAY)
    if p < 0 or n_fields == 0:
        return MALFORMED, start, kind, vin_at, seq, 0
    # Version before the field count: a later version may have another layout,
    # and must come out as UNSUPPORTED_VERSION, not MALFORMED.
    version, q = read_uint(buf, p, end)
    if q < 0:
        return MALFORMED, p, kind, vin_at, seq, 0
    if version != FORMAT_VERSION:
        return BAD_VERSION, p, kind, vin_at, seq, 0
    if n_fields != HEADER_FIELDS:
        return MALFORMED, start, kind, vin_at, seq, 0
    k, p = read_uint(buf, q, end)
    if p < 0:
        return MALFORMED, q, kind, vin_at, seq, 0
    if k < 0 or k > _MAX_KIND or (kinds >> k) & 1 == 0:
        return BAD_KIND, q, kind, vin_at, seq, 0
    kind = k
    n, q = read_len(buf, p, end, STR)
    if q < 0 or n != VIN_LENGTH:
        return MALFORMED, p, kind, vin_at, seq, 0
    vin_at, p = q, q + VIN_LENGTH
    seq, q = read_uint(buf, p, end)
    if q < 0:
        return MALFORMED, p, kind, vin_at, 0, 0
    base, p = read_uint(buf, q, end)
    if p < 0 or base < 0 or base >= TS_LIMIT:
        return MALFORMED, q, kind, vin_at, seq, 0
    return OK, p, kind, vin_at, seq, base
