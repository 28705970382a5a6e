"""numba parsers of the signals body (kind 1) and the events body (kind 2).

Each body parser returns (error offset or -1, next position, items, data bytes,
ts min, ts max), the shape every body parser of the kernel shares. With `write`
False it only validates and counts; with `write` True it also fills the
columns from row `o` on.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vehicle_ingest.codec._limits import MAX_COUNT, MAX_TEXT_BYTES, POW10, RAW_LIMIT, SCALE_EXP_MAX, TS_LIMIT
from vehicle_ingest.codec._msgpack_numba import (
    ARRAY,
    DELTA,
    DELTA_OF_DELTA,
    STR,
    UNSIGNED,
    ZIGZAG,
    read_len,
    read_small_int,
    read_uint,
    read_varint_bin,
    utf8_ok,
)
from vehicle_ingest.codec._wire import BLOCK_FIELDS, EVENTS_FIELDS

__all__ = ["EventCols", "SampleCols", "events_body", "signals_body"]

# Output columns: samples (msg, signal_id, ts, value); events (msg, id, ts, value, text spans).
SampleCols = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
EventCols = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@njit(cache=True, nogil=True)
def _scale(out: np.ndarray, scale_exp: int) -> None:
    """raw -> raw * 10**scale_exp in place, in a loop without early exits, so LLVM vectorizes it.

    Division for negative exponents: 1234 / 10.0 is exactly 123.4, 1234 * 0.1 is not.
    """
    if scale_exp >= 0:
        out *= POW10[scale_exp]
    else:
        out /= POW10[-scale_exp]


@njit(cache=True, nogil=True)
def _signal_block(
    buf: np.ndarray, p: int, end: int, base: int, write: bool, o: int, s_ts: np.ndarray, s_val: np.ndarray
) -> tuple[int, int, int, int, int, int]:
    """One [signal_id, scale_exp, count, ts, values] block.

    (error offset or -1, next position, signal id, count, ts min, ts max).
    """
    n, q = read_len(buf, p, end, ARRAY)
    if q < 0 or n != BLOCK_FIELDS:
        return p, 0, 0, 0, 0, 0
    sid, p = read_uint(buf, q, end)
    if p < 0 or sid < 0 or sid > MAX_COUNT:
        return q, 0, 0, 0, 0, 0
    exp, q = read_small_int(buf, p, end)
    if q < 0 or exp < -SCALE_EXP_MAX or exp > SCALE_EXP_MAX:
        return p, 0, 0, 0, 0, 0
    count, p = read_uint(buf, q, end)
    if p < 0 or count < 1 or count > MAX_COUNT:
        return q, 0, 0, 0, 0, 0
    err, p, tmin, tmax = read_varint_bin(buf, p, end, count, DELTA_OF_DELTA, base, 0, TS_LIMIT, write, s_ts, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    # Values: delta-coded raws, |raw| < 2**53 so each is exact as a float64 before scaling.
    err, p, _, _ = read_varint_bin(buf, p, end, count, DELTA, 0, 1 - RAW_LIMIT, RAW_LIMIT, write, s_val, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    if write:
        _scale(s_val[o : o + count], exp)
    return -1, p, sid, count, tmin, tmax


@njit(cache=True, nogil=True)
def signals_body(
    buf: np.ndarray, p: int, end: int, base: int, row: int, write: bool, o: int, cols: SampleCols
) -> tuple[int, int, int, int, int, int]:
    """The array of blocks."""
    s_msg, s_sid, s_ts, s_val = cols
    n_blocks, q = read_len(buf, p, end, ARRAY)
    if q < 0:
        return p, 0, 0, 0, 0, 0
    n_items, tmin, tmax = 0, TS_LIMIT, -1
    for _ in range(n_blocks):
        err, q, sid, count, t0, t1 = _signal_block(buf, q, end, base, write, o + n_items, s_ts, s_val)
        if err >= 0:
            return err, 0, 0, 0, 0, 0
        if write:
            s_msg[o + n_items : o + n_items + count] = row
            s_sid[o + n_items : o + n_items + count] = sid
        n_items += count
        tmin, tmax = min(tmin, t0), max(tmax, t1)
    return -1, q, n_items, 0, tmin, tmax


@njit(cache=True, nogil=True)
def _event_texts(
    buf: np.ndarray, p: int, end: int, count: int, write: bool, out: np.ndarray, o: int
) -> tuple[int, int]:
    """The texts array: (error offset or -1, next position). Writes (absolute offset, length) per text."""
    n, q = read_len(buf, p, end, ARRAY)
    if q < 0 or n != count:
        return p, 0
    for i in range(count):
        n, p = read_len(buf, q, end, STR)
        if p < 0 or n > MAX_TEXT_BYTES or not utf8_ok(buf, p, p + n):
            return q, 0
        if write:
            out[o + i, 0] = p
            out[o + i, 1] = n
        q = p + n
    return -1, q


@njit(cache=True, nogil=True)
def events_body(
    buf: np.ndarray, p: int, end: int, base: int, row: int, write: bool, o: int, cols: EventCols
) -> tuple[int, int, int, int, int, int]:
    """[count, event_ids, ts, values, texts]."""
    e_msg, e_id, e_ts, e_val, e_text = cols
    n, q = read_len(buf, p, end, ARRAY)
    if q < 0 or n != EVENTS_FIELDS:
        return p, 0, 0, 0, 0, 0
    count, p = read_uint(buf, q, end)
    if p < 0 or count < 0 or count > MAX_COUNT:
        return q, 0, 0, 0, 0, 0
    tmin, tmax = 0, 0
    err, p, _, _ = read_varint_bin(buf, p, end, count, UNSIGNED, 0, 0, MAX_COUNT + 1, write, e_id, o)
    if err < 0:
        err, p, tmin, tmax = read_varint_bin(buf, p, end, count, DELTA, base, 0, TS_LIMIT, write, e_ts, o)
    if err < 0:
        err, p, _, _ = read_varint_bin(buf, p, end, count, ZIGZAG, 0, 1 - RAW_LIMIT, RAW_LIMIT, write, e_val, o)
    if err < 0:
        err, p = _event_texts(buf, p, end, count, write, e_text, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    if write:
        e_msg[o : o + count] = row
    return -1, p, count, 0, tmin, tmax
