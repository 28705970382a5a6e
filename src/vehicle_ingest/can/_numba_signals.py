"""numba batch decoder: frames in, one row per signal value out.

One kernel call decodes a whole batch. The message of each frame is found by
binary search over the manifest's sorted keys; each signal is read with a
byte-wise loop that never touches a byte past the frame's length (a signal
the frame is too short for is skipped, as cantools' allow_truncated does).
A multiplexed signal is emitted only when its switch was read in the same
frame and holds one of the signal's multiplexer values.

numba does no bounds checks: every data read is guarded by `sig_bytes <=
frame length`, every frame's span is checked against the data buffer before
the kernel starts, and output rows are bounded by a count computed in numpy.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vehicle_ingest.can._types import SignalValues
from vehicle_ingest.can.manifest import Manifest

__all__ = ["decode_signals", "frame_spans"]


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
    m = np.searchsorted(msg_key, key)
    return m if m < len(msg_key) and msg_key[m] == key else -1


@njit(cache=True, nogil=True)
def _kernel(
    msg_key: np.ndarray,
    msg_first: np.ndarray,
    pos: np.ndarray,
    length: np.ndarray,
    big: np.ndarray,
    signed: np.ndarray,
    is_float: np.ndarray,
    factor: np.ndarray,
    offset: np.ndarray,
    need: np.ndarray,
    parent: np.ndarray,
    mux_first: np.ndarray,
    mux_values: np.ndarray,
    shift: np.ndarray,
    mask: np.ndarray,
    order: np.ndarray,
    sext: np.ndarray,
    std_lookup: np.ndarray,
    keys: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    out_frame: np.ndarray,
    out_sig: np.ndarray,
    out_raw: np.ndarray,
    out_val: np.ndarray,
    known: np.ndarray,
) -> int:
    n_out = 0
    present = np.zeros(len(pos), dtype=np.bool_)  # signal read in the current frame of its message
    raws = np.zeros(len(pos), dtype=np.int64)
    f32 = np.zeros(1, dtype=np.int64)
    f32_bits = f32.view(np.float32)  # little-endian host: element 0 is the low 32 bits
    f64 = np.zeros(1, dtype=np.int64)
    f64_bits = f64.view(np.float64)
    for f in range(len(keys)):
        m = _find(msg_key, std_lookup, keys[f])
        if m < 0:
            continue
        known[f] = True
        base, size = starts[f], sizes[f]
        # Classic frames: both byte orders as one 64-bit word each; a signal is then one shift and mask.
        word = size <= 8
        le, be = np.uint64(0), np.uint64(0)
        if word:
            for k in range(size):
                b = np.uint64(data[base + k])
                le |= b << np.uint64(8 * k)
                be |= b << np.uint64(56 - 8 * k)
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
            n = length[s]
            # Branch-free on the common path: which word, sign extension and scaling are all
            # arithmetic, because a random mix of messages makes per-signal branches unpredictable.
            if word:
                r = np.int64((((be ^ le) & order[s] ^ le) >> shift[s]) & mask[s])
            elif big[s]:
                r = _big_endian(data, base, pos[s], n)
            else:
                r = _little_endian(data, base, pos[s], n)
            if is_float[s]:
                if n == 32:
                    f32[0] = r
                    x = np.float64(f32_bits[0])
                else:
                    f64[0] = r
                    x = f64_bits[0]
                if factor[s] != 1.0 or offset[s] != 0.0:  # identity kept exact: -0.0 and NaN survive
                    x = x * factor[s] + offset[s]
            else:
                r = (r << sext[s]) >> sext[s]  # sign-extends bit n-1 when signed (arithmetic shift)
                x = np.float64(r)
                if r < 0 and sext[s] == 0 and not signed[s]:
                    x = np.float64(np.uint64(r))  # an unsigned 64-bit value past 2**63
                x = x * factor[s] + offset[s]  # exact for identity: x is never -0.0 or NaN here
            present[s] = True
            raws[s] = r
            out_frame[n_out] = f
            out_sig[n_out] = s
            out_raw[n_out] = r
            out_val[n_out] = x
            n_out += 1
    return n_out


def frame_spans(data: np.ndarray, length: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
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


def decode_signals(manifest: Manifest, keys: np.ndarray, data: np.ndarray, length: np.ndarray) -> SignalValues:
    """Decode frames (`keys` from `frame_key`) against `manifest`; see SignalValues."""
    keys = np.ascontiguousarray(keys, dtype=np.uint32)
    sizes = np.ascontiguousarray(length, dtype=np.int64)
    if len(keys) != len(sizes):
        raise ValueError(f"{len(keys)} frame keys but {len(sizes)} lengths")
    if ((sizes < 0) | (sizes > 64)).any():
        raise ValueError("frame lengths must be 0..64 bytes")
    buf, starts = frame_spans(data, sizes)
    bound = _row_bound(manifest, keys)
    cols = (np.empty(bound, np.int32), np.empty(bound, np.int32), np.empty(bound, np.int64), np.empty(bound))
    known = np.zeros(len(keys), dtype=bool)
    n = _kernel(*manifest.kernel_tables(), keys, buf, starts, sizes, *cols, known)
    return SignalValues(cols[0][:n], cols[1][:n], cols[2][:n], cols[3][:n], known)


def _row_bound(manifest: Manifest, keys: np.ndarray) -> int:
    """Most rows the frames can yield: every signal of each frame's message."""
    return int(_count_rows(manifest.msg_key, manifest.msg_first, manifest.std_lookup, keys))


@njit(cache=True, nogil=True)
def _count_rows(msg_key: np.ndarray, msg_first: np.ndarray, std_lookup: np.ndarray, keys: np.ndarray) -> int:
    total = 0
    for f in range(len(keys)):
        m = _find(msg_key, std_lookup, keys[f])
        if m >= 0:
            total += msg_first[m + 1] - msg_first[m]
    return total
