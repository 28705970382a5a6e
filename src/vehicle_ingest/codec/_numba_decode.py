"""Batch decoder for wire format v1: one numba kernel over all payloads of a batch.

The payloads are joined into one uint8 buffer. Pass 1 parses and validates
every message and counts its samples/events, allocating nothing; the exact
output columns are then allocated and pass 2 runs the same parse again, with
`write` set, over the messages that were OK. Both passes share every parse
function, so they cannot disagree.

numba does no bounds checks: every read below is guarded by an explicit
comparison with the payload end, and every declared length is checked against
the bytes left before it is used.

Readers return (value, next) with next == -1 on failure, and the caller
reports the element's start offset. Body parsers return an absolute error
offset, -1 when fine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from vehicle_ingest.codec._limits import MAX_COUNT, MAX_TEXT_BYTES, POW10, RAW_LIMIT, SCALE_EXP_MAX, TS_LIMIT
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

__all__ = ["decode"]

# numba freezes module-level ints as constants; IntEnum members would be objects.
_OK, _MALFORMED, _BAD_VERSION, _BAD_KIND, _OVERSIZE, _EMPTY = (int(s) for s in Status)
_SIGNALS, _EVENTS = int(Kind.SIGNALS), int(Kind.EVENTS)
_ARRAY, _STR, _BIN = 0, 1, 2
_INT64_MAX = np.iinfo(np.int64).max
_MAX_OFFSET = np.iinfo(np.int32).max

# Columns of the per-message int64 matrix the kernel fills.
_STATUS, _ERROR, _KIND, _SEQ, _BASE_TS, _TS_MIN, _TS_MAX, _N_ITEMS = range(8)
_INFO_COLS = 8

# Output columns: samples (msg, signal_id, ts, value); events (msg, id, ts, value, text spans).
_SampleCols = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_EventCols = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


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
def _read_uint(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:
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
def _read_small_int(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:
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
def _read_len(buf: np.ndarray, p: int, end: int, family: int) -> tuple[int, int]:
    """Declared length of an array/str/bin at p, rejected when it exceeds the bytes left.

    An array element takes at least one byte, so the same bound is safe for arrays.
    """
    if p >= end:
        return 0, -1
    tag = np.int64(buf[p])
    size = 0
    n = 0
    if family == _ARRAY and 0x90 <= tag <= 0x9F:
        n = tag - 0x90
    elif family == _ARRAY and (tag == 0xDC or tag == 0xDD):
        size = 2 if tag == 0xDC else 4
    elif family == _STR and 0xA0 <= tag <= 0xBF:
        n = tag - 0xA0
    elif family == _STR and 0xD9 <= tag <= 0xDB:
        size = 1 << (tag - 0xD9)
    elif family == _BIN and 0xC4 <= tag <= 0xC6:
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
def _varint(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:
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
def _utf8_ok(buf: np.ndarray, p: int, end: int) -> bool:
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


@njit(cache=True, nogil=True)
def _signal_ts(
    buf: np.ndarray, p: int, end: int, count: int, base: int, write: bool, out: np.ndarray, o: int
) -> tuple[int, int, int]:
    """One block's timestamps: (error offset or -1, ts min, ts max)."""
    t = base
    delta = 0
    tmin = TS_LIMIT
    tmax = -1
    for i in range(count):
        if p < end and buf[p] < 0x80:
            u, q = np.int64(buf[p]), p + 1
        else:
            u, q = _varint(buf, p, end)
            if q < 0:
                return p, 0, 0
        z = (u >> 1) ^ -(u & 1)
        # Codes 0 and 1 are t0 - base and the first delta; the rest are deltas of deltas.
        delta = z if i < 2 else delta + z
        t += delta
        if t < 0 or t >= TS_LIMIT:
            return p, 0, 0
        if write:
            out[o + i] = t
        tmin = min(tmin, t)
        tmax = max(tmax, t)
        p = q
    if p != end:
        return p, 0, 0
    return -1, tmin, tmax


@njit(cache=True, nogil=True)
def _signal_values(
    buf: np.ndarray, p: int, end: int, count: int, scale_exp: int, write: bool, out: np.ndarray, o: int
) -> int:
    """One block's values (delta-coded raws, scaled to float64): error offset or -1."""
    r = 0
    for i in range(count):
        if p < end and buf[p] < 0x80:
            u, q = np.int64(buf[p]), p + 1
        else:
            u, q = _varint(buf, p, end)
            if q < 0:
                return p
        r += (u >> 1) ^ -(u & 1)
        if r <= -RAW_LIMIT or r >= RAW_LIMIT:
            return p
        if write:
            out[o + i] = r  # exact: |r| < 2**53
        p = q
    if p != end:
        return p
    if write:
        # A separate loop without early exits, so LLVM can vectorize the scaling.
        out_block = out[o : o + count]
        if scale_exp >= 0:
            out_block *= POW10[scale_exp]
        else:
            out_block /= POW10[-scale_exp]
    return -1


@njit(cache=True, nogil=True)
def _signal_block(
    buf: np.ndarray, p: int, end: int, base: int, write: bool, o: int, s_ts: np.ndarray, s_val: np.ndarray
) -> tuple[int, int, int, int, int, int]:
    """One [signal_id, scale_exp, count, ts, values] block.

    (error offset or -1, next position, signal id, count, ts min, ts max).
    """
    n, q = _read_len(buf, p, end, _ARRAY)
    if q < 0 or n != 5:
        return p, 0, 0, 0, 0, 0
    sid, p = _read_uint(buf, q, end)
    if p < 0 or sid < 0 or sid > MAX_COUNT:
        return q, 0, 0, 0, 0, 0
    exp, q = _read_small_int(buf, p, end)
    if q < 0 or exp < -SCALE_EXP_MAX or exp > SCALE_EXP_MAX:
        return p, 0, 0, 0, 0, 0
    count, p = _read_uint(buf, q, end)
    if p < 0 or count < 1 or count > MAX_COUNT:
        return q, 0, 0, 0, 0, 0
    n, q = _read_len(buf, p, end, _BIN)
    if q < 0:
        return p, 0, 0, 0, 0, 0
    err, tmin, tmax = _signal_ts(buf, q, q + n, count, base, write, s_ts, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    p = q + n
    n, q = _read_len(buf, p, end, _BIN)
    if q < 0:
        return p, 0, 0, 0, 0, 0
    err = _signal_values(buf, q, q + n, count, exp, write, s_val, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    return -1, q + n, sid, count, tmin, tmax


@njit(cache=True, nogil=True)
def _signals_body(
    buf: np.ndarray, p: int, end: int, base: int, row: int, write: bool, o: int, cols: _SampleCols
) -> tuple[int, int, int, int, int]:
    """The array of blocks: (error offset or -1, next position, samples, ts min, ts max)."""
    s_msg, s_sid, s_ts, s_val = cols
    n_blocks, q = _read_len(buf, p, end, _ARRAY)
    if q < 0:
        return p, 0, 0, 0, 0
    n_items, tmin, tmax = 0, TS_LIMIT, -1
    for _ in range(n_blocks):
        err, q, sid, count, t0, t1 = _signal_block(buf, q, end, base, write, o + n_items, s_ts, s_val)
        if err >= 0:
            return err, 0, 0, 0, 0
        if write:
            s_msg[o + n_items : o + n_items + count] = row
            s_sid[o + n_items : o + n_items + count] = sid
        n_items += count
        tmin, tmax = min(tmin, t0), max(tmax, t1)
    return -1, q, n_items, tmin, tmax


@njit(cache=True, nogil=True)
def _event_bin(
    buf: np.ndarray, p: int, end: int, count: int, mode: int, base: int, write: bool, out: np.ndarray, o: int
) -> tuple[int, int, int, int]:
    """One events bin; mode 0 = ids, 1 = timestamps (deltas from base), 2 = raw values.

    (error offset or -1, next position, min, max); min/max mean something for timestamps only.
    """
    n, q = _read_len(buf, p, end, _BIN)
    if q < 0:
        return p, 0, 0, 0
    p, bin_end = q, q + n
    acc, vmin, vmax = base, TS_LIMIT, -1
    for i in range(count):
        if p < bin_end and buf[p] < 0x80:
            u, q = np.int64(buf[p]), p + 1
        else:
            u, q = _varint(buf, p, bin_end)
            if q < 0:
                return p, 0, 0, 0
        z = (u >> 1) ^ -(u & 1)
        if mode == 0:
            v, bad = u, u > MAX_COUNT
        elif mode == 1:
            acc += z
            v, bad = acc, acc < 0 or acc >= TS_LIMIT
            vmin, vmax = min(vmin, v), max(vmax, v)
        else:
            v, bad = z, z <= -RAW_LIMIT or z >= RAW_LIMIT
        if bad:
            return p, 0, 0, 0
        if write:
            out[o + i] = v
        p = q
    if p != bin_end:
        return p, 0, 0, 0
    return -1, p, vmin, vmax


@njit(cache=True, nogil=True)
def _event_texts(
    buf: np.ndarray, p: int, end: int, count: int, write: bool, out: np.ndarray, o: int
) -> tuple[int, int]:
    """The texts array: (error offset or -1, next position). Writes (absolute offset, length) per text."""
    n, q = _read_len(buf, p, end, _ARRAY)
    if q < 0 or n != count:
        return p, 0
    for i in range(count):
        n, p = _read_len(buf, q, end, _STR)
        if p < 0 or n > MAX_TEXT_BYTES or not _utf8_ok(buf, p, p + n):
            return q, 0
        if write:
            out[o + i, 0] = p
            out[o + i, 1] = n
        q = p + n
    return -1, q


@njit(cache=True, nogil=True)
def _events_body(
    buf: np.ndarray, p: int, end: int, base: int, row: int, write: bool, o: int, cols: _EventCols
) -> tuple[int, int, int, int, int]:
    """[count, event_ids, ts, values, texts]: (error offset or -1, next position, events, ts min, ts max)."""
    e_msg, e_id, e_ts, e_val, e_text = cols
    n, q = _read_len(buf, p, end, _ARRAY)
    if q < 0 or n != 5:
        return p, 0, 0, 0, 0
    count, p = _read_uint(buf, q, end)
    if p < 0 or count < 0 or count > MAX_COUNT:
        return q, 0, 0, 0, 0
    tmin, tmax = 0, 0
    err, p, _, _ = _event_bin(buf, p, end, count, 0, 0, write, e_id, o)
    if err < 0:
        err, p, tmin, tmax = _event_bin(buf, p, end, count, 1, base, write, e_ts, o)
    if err < 0:
        err, p, _, _ = _event_bin(buf, p, end, count, 2, 0, write, e_val, o)
    if err < 0:
        err, p = _event_texts(buf, p, end, count, write, e_text, o)
    if err >= 0:
        return err, 0, 0, 0, 0
    if write:
        e_msg[o : o + count] = row
    return -1, p, count, tmin, tmax


@njit(cache=True, nogil=True)
def _header(buf: np.ndarray, start: int, end: int, row: int, info: np.ndarray, vin: np.ndarray) -> tuple[int, int]:
    """Header fields, in wire order: (status, error offset) on failure, (OK, body offset) when fine."""
    n_fields, p = _read_len(buf, start, end, _ARRAY)
    if p < 0 or n_fields == 0:
        return _MALFORMED, start
    # Version before the field count: a later version may have another layout,
    # and must come out as UNSUPPORTED_VERSION, not MALFORMED.
    version, q = _read_uint(buf, p, end)
    if q < 0:
        return _MALFORMED, p
    if version != FORMAT_VERSION:
        return _BAD_VERSION, p
    if n_fields != 6:
        return _MALFORMED, start
    kind, p = _read_uint(buf, q, end)
    if p < 0:
        return _MALFORMED, q
    if kind != _SIGNALS and kind != _EVENTS:
        return _BAD_KIND, q
    info[row, _KIND] = kind
    n, q = _read_len(buf, p, end, _STR)
    if q < 0 or n != VIN_LENGTH:
        return _MALFORMED, p
    vin[row, :] = buf[q : q + VIN_LENGTH]
    p = q + VIN_LENGTH
    seq, q = _read_uint(buf, p, end)
    if q < 0:
        return _MALFORMED, p
    info[row, _SEQ] = seq  # raw bits: the column is viewed as uint64
    base, p = _read_uint(buf, q, end)
    if p < 0 or base < 0 or base >= TS_LIMIT:
        return _MALFORMED, q
    info[row, _BASE_TS] = base
    return _OK, p


@njit(cache=True, nogil=True)
def _parse_message(
    buf: np.ndarray,
    start: int,
    end: int,
    row: int,
    info: np.ndarray,
    vin: np.ndarray,
    write: bool,
    o: int,
    s_cols: _SampleCols,
    e_cols: _EventCols,
) -> tuple[int, int]:
    """(status, absolute error offset or -1); fills the message's info row when OK."""
    status, body = _header(buf, start, end, row, info, vin)
    if status != _OK:
        return status, body
    base = info[row, _BASE_TS]
    if info[row, _KIND] == _SIGNALS:
        err, p, n_items, tmin, tmax = _signals_body(buf, body, end, base, row, write, o, s_cols)
    else:
        err, p, n_items, tmin, tmax = _events_body(buf, body, end, base, row, write, o, e_cols)
    if err >= 0:
        return _MALFORMED, err
    if p != end:
        return _MALFORMED, p  # trailing bytes
    if n_items == 0:
        return _EMPTY, body  # only said of an otherwise well-formed message
    info[row, _N_ITEMS] = n_items
    info[row, _TS_MIN] = tmin
    info[row, _TS_MAX] = tmax
    return _OK, -1


@njit(cache=True, nogil=True)
def _kernel(
    buf: np.ndarray,
    offs: np.ndarray,
    oversize: np.ndarray,
    write: bool,
    out_start: np.ndarray,
    info: np.ndarray,
    vin: np.ndarray,
    s_cols: _SampleCols,
    e_cols: _EventCols,
) -> None:
    """Pass 1 (write=False) parses every message; pass 2 re-parses the OK ones and fills the columns."""
    for row in range(len(oversize)):
        if write and info[row, _STATUS] != _OK:
            continue
        if oversize[row]:
            info[row, _STATUS] = _OVERSIZE
            info[row, _ERROR] = 0
            continue
        start = offs[row]
        status, err = _parse_message(buf, start, offs[row + 1], row, info, vin, write, out_start[row], s_cols, e_cols)
        info[row, _STATUS] = status
        info[row, _ERROR] = err - start if err >= 0 else -1


def decode(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> DecodedBatch:
    """Decode a batch: one status row per payload, the samples/events of the OK ones."""
    if max_payload_bytes > _MAX_OFFSET:
        raise ValueError(f"max_payload_bytes must be <= {_MAX_OFFSET} (error offsets are int32)")
    n = len(payloads)
    sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    oversize = sizes > max_payload_bytes
    # Oversize payloads are never parsed, so they are not copied either.
    kept = [b"" if big else p for p, big in zip(payloads, oversize.tolist(), strict=True)]
    joined = b"".join(kept)
    buf = np.frombuffer(joined, dtype=np.uint8)
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(oversize, 0, sizes), out=offs[1:])
    info = np.zeros((n, _INFO_COLS), dtype=np.int64)
    vin = np.zeros((n, VIN_LENGTH), dtype=np.uint8)
    no_start = np.zeros(n, dtype=np.int64)
    _kernel(buf, offs, oversize, False, no_start, info, vin, _sample_arrays(0), _event_arrays(0))
    s_cols, e_cols = _sample_arrays(_total(info, _SIGNALS)), _event_arrays(_total(info, _EVENTS))
    _kernel(buf, offs, oversize, True, _out_starts(info), info, vin, s_cols, e_cols)
    return DecodedBatch(_message_columns(info, vin), _samples(s_cols), _events(e_cols, joined))


def _items_of(info: np.ndarray, kind: int) -> np.ndarray:
    mine = (info[:, _STATUS] == _OK) & (info[:, _KIND] == kind)
    return np.where(mine, info[:, _N_ITEMS], 0)


def _total(info: np.ndarray, kind: int) -> int:
    return int(_items_of(info, kind).sum())


def _out_starts(info: np.ndarray) -> np.ndarray:
    """Where each OK message's samples (or events) start in the output columns."""
    starts = np.zeros(len(info), dtype=np.int64)
    for kind in (_SIGNALS, _EVENTS):
        items = _items_of(info, kind)
        mine = info[:, _KIND] == kind
        starts[mine] = (np.cumsum(items) - items)[mine]
    return starts


def _sample_arrays(n: int) -> _SampleCols:
    return (np.empty(n, np.int32), np.empty(n, np.uint16), np.empty(n, np.int64), np.empty(n, np.float64))


def _event_arrays(n: int) -> _EventCols:
    # ids as int64 here, cast to uint16 afterwards: it lets one loop serve all three bins.
    return (
        np.empty(n, np.int32),
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty((n, 2), np.int64),
    )


def _message_columns(info: np.ndarray, vin: np.ndarray) -> MessageColumns:
    return MessageColumns(
        status=info[:, _STATUS].astype(np.uint8),
        error_offset=info[:, _ERROR].astype(np.int32),
        kind=info[:, _KIND].astype(np.uint8),
        vin=vin.view(f"S{VIN_LENGTH}").reshape(len(vin)),
        seq=info[:, _SEQ].view(np.uint64),
        base_ts=info[:, _BASE_TS].copy(),
        ts_min=info[:, _TS_MIN].copy(),
        ts_max=info[:, _TS_MAX].copy(),
        n_items=info[:, _N_ITEMS].astype(np.int32),
    )


def _samples(cols: _SampleCols) -> SampleColumns:
    msg, sid, ts, val = cols
    return SampleColumns(msg=msg, signal_id=sid, ts=ts, value=val)


def _events(cols: _EventCols, joined: bytes) -> EventColumns:
    msg, ids, ts, val, spans = cols
    text = np.empty(len(msg), dtype=object)
    text[:] = [joined[o : o + n].decode("utf-8") for o, n in spans.tolist()]
    return EventColumns(msg=msg, event_id=ids.astype(np.uint16), ts=ts, value=val, text=text)
