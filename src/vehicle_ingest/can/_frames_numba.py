"""numba batch decoder: frames in, one row per signal value out.

One kernel call decodes a whole batch, in two kinds of work:

- *Plain frames* (classic, at most 8 bytes, long enough for every signal of a
  message without multiplexing: nearly all traffic) are read as two 64-bit
  words (little- and big-endian), so a signal is a shift and a mask, with no
  per-signal branch.
- *Other frames* (multiplexed messages, frames shorter than their message,
  CAN FD frames) go through a per-frame path that reads byte by byte and never
  touches a byte past the frame's length: a signal the frame is too short for
  is skipped (as cantools' allow_truncated does), and a multiplexed signal is
  emitted only when its switch, read in the same frame, holds one of its values.

Rows come out grouped by frame in input order, signals in manifest order. A
first pass bounds the rows (every signal of each frame's message), so the
output is allocated once.

numba does no bounds checks: every data read is guarded by `sig_bytes <=
frame length`, and every frame's span is checked against the data buffer
before the kernel starts.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vehicle_ingest.can._types import SignalValues
from vehicle_ingest.can.manifest import Manifest

__all__ = ["decode_frames_numba", "frame_spans"]


@njit(cache=True, nogil=True, inline="always")
def _little_endian(data: np.ndarray, base: int, pos: int, length: int) -> int:
    """Bits pos..pos+length-1 (LSB first across bytes 0, 1, ...) as int64 bits."""
    v = np.int64(0)
    got = 0
    while got < length:
        bit = pos & 7
        take = min(8 - bit, length - got)
        chunk = (np.int64(data[base + (pos >> 3)]) >> bit) & ((1 << take) - 1)
        v |= chunk << got
        got += take
        pos += take
    return v


@njit(cache=True, nogil=True, inline="always")
def _big_endian(data: np.ndarray, base: int, pos: int, length: int) -> int:
    """`length` bits from network-order bit `pos` (bit 0 = MSB of byte 0), most significant first."""
    v = np.int64(0)
    rem = length
    while rem > 0:
        avail = 8 - (pos & 7)
        take = min(avail, rem)
        chunk = (np.int64(data[base + (pos >> 3)]) >> (avail - take)) & ((1 << take) - 1)
        v = (v << take) | chunk
        rem -= take
        pos += take
    return v


@njit(cache=True, nogil=True, inline="always")
def _find(msg_key: np.ndarray, std_lookup: np.ndarray, key: np.uint32) -> int:
    """Message row of a frame key, -1 when the manifest has none: a table for 11-bit ids, else binary search."""
    if key < 2048:
        return std_lookup[key]
    lo, hi = 0, len(msg_key)  # binary search: numba's np.searchsorted costs several times more here
    while lo < hi:
        mid = (lo + hi) >> 1
        if msg_key[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(msg_key) and msg_key[lo] == key else -1


@njit(cache=True, nogil=True, inline="always")
def _to_float(bits: int, n: int, scratch: np.ndarray) -> float:
    """IEEE binary32 (n == 32, the low 32 bits) or binary64 bits as a float64."""
    scratch[0] = bits
    return np.float64(scratch.view(np.float32)[0]) if n == 32 else scratch.view(np.float64)[0]


@njit(cache=True, nogil=True, inline="always")
def _physical(
    r: int, is_float: bool, n: int, signed: bool, sext: int, factor: float, offset: float, scratch: np.ndarray
) -> tuple[int, float]:
    """(raw as stored, value) from a signal's raw bits: sign extension, IEEE floats, factor and offset.

    Scalars in, not the manifest's arrays: taking an array out of a tuple costs numba a reference
    count update, too much for the innermost loop.
    """
    if is_float:
        x = _to_float(r, n, scratch)
        if factor != 1.0 or offset != 0.0:  # identity kept exact: -0.0 and NaN survive
            x = x * factor + offset
        return r, x
    r = (r << sext) >> sext  # sign-extends bit n-1 when signed (arithmetic shift); no-op otherwise
    x = np.float64(np.uint64(r)) if r < 0 and not signed else np.float64(r)  # unsigned 64-bit past 2**63
    return r, x * factor + offset  # exact for identity: x is never -0.0 or NaN here


@njit(cache=True, nogil=True)
def _frame(
    tables: tuple,
    data: np.ndarray,
    base: int,
    size: int,
    m: int,
    f: int,
    write: bool,
    o: int,
    present: np.ndarray,
    raws: np.ndarray,
    scratch: np.ndarray,
    out: tuple,
) -> int:
    """The per-frame path: decode (or, write=False, only count) one frame's signals; returns the row count."""
    msg_first, pos, length, big, need, parent, mux_first, mux_values = (
        tables[1],
        tables[2],
        tables[3],
        tables[4],
        tables[9],
        tables[10],
        tables[11],
        tables[12],
    )
    signed, is_float, factor, offset, sext = tables[5], tables[6], tables[7], tables[8], tables[13]
    out_frame, out_sig, out_raw, out_val = out
    n_out = 0
    for s in range(msg_first[m], msg_first[m + 1]):
        present[s] = False
        if need[s] > size:
            continue
        p = parent[s]
        if p >= 0:
            if not present[p]:
                continue
            hit = False
            for k in range(mux_first[s], mux_first[s + 1]):
                hit = hit or mux_values[k] == raws[p]
            if not hit:
                continue
        bits = _big_endian(data, base, pos[s], length[s]) if big[s] else _little_endian(data, base, pos[s], length[s])
        r, x = _physical(bits, is_float[s], length[s], signed[s], sext[s], factor[s], offset[s], scratch)
        present[s] = True
        raws[s] = r  # a multiplexer switch's value, for the signals it gates (later in the message)
        if write:
            out_frame[o + n_out] = f
            out_sig[o + n_out] = s
            out_raw[o + n_out] = r
            out_val[o + n_out] = x
        n_out += 1
    return n_out


@njit(cache=True, nogil=True, inline="always")
def _byte_swap(x: np.uint64) -> np.uint64:
    """The 8 bytes in reverse order: the big-endian reading of a little-endian word."""
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8)) | ((x >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF))
    x = ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16)) | ((x >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF))
    return (x << np.uint64(32)) | (x >> np.uint64(32))


@njit(cache=True, nogil=True)
def _row_bound(tables: tuple, keys: np.ndarray) -> int:
    """Most rows the frames can yield (every signal of each frame's message): the output's size."""
    msg_key, msg_first, std_lookup = tables[0], tables[1], tables[14]
    total = 0
    for f in range(len(keys)):
        m = _find(msg_key, std_lookup, keys[f])
        if m >= 0:
            total += msg_first[m + 1] - msg_first[m]
    return total


@njit(cache=True, nogil=True)
def _kernel(
    tables: tuple, keys: np.ndarray, data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, known: np.ndarray
) -> tuple:
    # Every array is taken out of the tuple once, here: inside loops that would cost a
    # reference count update per access.
    msg_key, msg_first, length = tables[0], tables[1], tables[3]
    std_lookup, msg_need, msg_plain, record = tables[14], tables[15], tables[16], tables[17]
    record_f = record.view(np.float64)
    bound = _row_bound(tables, keys)
    out = (np.empty(bound, np.int32), np.empty(bound, np.int32), np.empty(bound, np.int64), np.empty(bound))
    out_frame, out_sig, out_raw, out_val = out
    present = np.zeros(len(length), np.bool_)
    raws = np.zeros(len(length), np.int64)
    scratch = np.zeros(1, np.int64)
    o = 0
    for f in range(len(keys)):
        m = _find(msg_key, std_lookup, keys[f])
        if m < 0:
            continue
        known[f] = True
        size, base = sizes[f], starts[f]
        if not (size <= 8 and msg_need[m] <= size and msg_plain[m]):
            o += _frame(tables, data, base, size, m, f, True, o, present, raws, scratch, out)
            continue
        # A plain frame: both byte orders as one 64-bit word each; every signal is a shift and a
        # mask, picked without a branch (a random mix of messages makes branches unpredictable).
        le = np.uint64(0)
        for k in range(size):
            le |= np.uint64(data[base + k]) << np.uint64(8 * k)
        swap = _byte_swap(le) ^ le
        for s in range(msg_first[m], msg_first[m + 1]):
            bits = np.int64((((swap & record[s, 0]) ^ le) >> record[s, 1]) & record[s, 2])
            flags = np.int64(record[s, 4])
            r, x = _physical(
                bits,
                (flags >> 9) & 1 == 1,
                flags & 0xFF,
                (flags >> 8) & 1 == 1,
                np.int64(record[s, 3]),
                record_f[s, 5],
                record_f[s, 6],
                scratch,
            )
            out_frame[o] = f
            out_sig[o] = s
            out_raw[o] = r
            out_val[o] = x
            o += 1
    return out_frame[:o], out_sig[:o], out_raw[:o], out_val[:o]


def frame_spans(data: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat uint8 data, start offset per frame). `data` is flat (frames back to back) or 2-D (one row per frame)."""
    sizes = np.ascontiguousarray(length, dtype=np.int64)
    buf = np.ascontiguousarray(data, dtype=np.uint8)
    if buf.ndim == 2:
        if (sizes > buf.shape[1]).any():
            raise ValueError(f"a frame length exceeds the data row width {buf.shape[1]}")
        starts = np.arange(len(sizes), dtype=np.int64) * buf.shape[1]
        return buf.reshape(-1), starts
    starts = np.zeros(len(sizes), dtype=np.int64)
    if len(sizes):
        np.cumsum(sizes[:-1], out=starts[1:])
        if int(sizes.sum()) > len(buf):
            raise ValueError(f"frame lengths add up to {int(sizes.sum())} bytes, data holds {len(buf)}")
    return buf, starts


def decode_frames_numba(manifest: Manifest, keys: np.ndarray, data: np.ndarray, length: np.ndarray) -> SignalValues:
    """Decode frames (`keys` from `frame_key`) against `manifest`; see SignalValues."""
    keys = np.ascontiguousarray(keys, dtype=np.uint32)
    sizes = np.ascontiguousarray(length, dtype=np.int64)
    if len(keys) != len(sizes):
        raise ValueError(f"{len(keys)} frame keys but {len(sizes)} lengths")
    if ((sizes < 0) | (sizes > 64)).any():
        raise ValueError("frame lengths must be 0..64 bytes")
    buf, starts = frame_spans(data, sizes)
    known = np.zeros(len(keys), dtype=bool)
    frame, signal, raw, value = _kernel(manifest.kernel_tables(), keys, buf, starts, sizes, known)
    return SignalValues(frame, signal, raw, value, known)
