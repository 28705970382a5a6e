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
    n_msg = len(msg_key)
    present = np.zeros(len(pos), dtype=np.bool_)  # signal read in the current frame of its message
    raws = np.zeros(len(pos), dtype=np.int64)
    f32 = np.zeros(1, dtype=np.int32)
    f64 = np.zeros(1, dtype=np.int64)
    for f in range(len(keys)):
        m = np.searchsorted(msg_key, keys[f])
        if m >= n_msg or msg_key[m] != keys[f]:
            continue
        known[f] = True
        base, size = starts[f], sizes[f]
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
            r = _big_endian(data, base, pos[s], n) if big[s] else _little_endian(data, base, pos[s], n)
            if is_float[s]:
                if n == 32:
                    f32[0] = np.int32(r & 0xFFFFFFFF) if r < 0x80000000 else np.int32(r - 0x100000000)
                    x = np.float64(f32.view(np.float32)[0])
                else:
                    f64[0] = r
                    x = f64.view(np.float64)[0]
            else:
                if signed[s] and n < 64 and (r >> (n - 1)) & 1:
                    r -= np.int64(1) << n
                # An unsigned 64-bit value past 2**63 sits in r as a negative int64.
                x = np.float64(np.uint64(r)) if r < 0 and not signed[s] else np.float64(r)
            present[s] = True
            raws[s] = r
            if factor[s] != 1.0 or offset[s] != 0.0:  # identity kept exact: -0.0 and NaN survive
                x = x * factor[s] + offset[s]
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
    if manifest.n_messages == 0 or len(keys) == 0:
        return 0
    m = np.minimum(np.searchsorted(manifest.msg_key, keys), manifest.n_messages - 1)
    per_message = np.diff(manifest.msg_first)
    return int(np.where(manifest.msg_key[m] == keys, per_message[m], 0).sum())
