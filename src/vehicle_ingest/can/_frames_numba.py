"""numba twin of the CAN frame decoder: frames in, one row per signal value out.

One kernel call decodes a whole batch, in two kinds of work:

- *Word path* (nearly all traffic, classic and CAN FD): a frame of a message
  without multiplexing whose signals each fit one 64-bit word (see `_tables`),
  long enough for all of them. Per signal: one unaligned 8-byte load at its
  first byte, byte-swapped for Motorola signals without a branch, a shift and
  a mask.
- *Byte path* (multiplexed messages, frames shorter than their message,
  signals spanning more than 8 bytes, the last frames of the buffer): reads
  byte by byte and never touches a byte past the frame's length: a signal the
  frame is too short for is skipped (as cantools' allow_truncated does), and a
  multiplexed signal is emitted only when its switch, read in the same frame,
  holds one of its raw values.

What made it fast (profiled with perf on CAN FD frames, benchmarks/README.md):
the frame loop calls no function with array arguments and takes no array out
of a tuple (numba updated the arrays' reference counts, atomically, per call:
that was 40 % of the time when the byte path was a call per frame); indices
are unsigned (numba checks a signed index for wraparound at every access, and
those checks kept LLVM from merging the 8 byte loads of a word into one); and
a signal's fields are one 64-byte record.

Rows come out grouped by frame in input order, signals in manifest order. A
first pass bounds the rows (every signal of each frame's message), so the
output is allocated once.

numba does no bounds checks: byte-path reads are guarded by `sig_bytes <=
frame length`, word-path loads by `start + msg_read_end <= len(data)`, and
every frame's span is checked against the data buffer before the kernel starts.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from vehicle_ingest.can._tables import KernelTables
from vehicle_ingest.can._types import SignalValues
from vehicle_ingest.can.manifest import Manifest

__all__ = ["decode_frames_numba", "frame_spans"]

if sys.byteorder != "little":  # the word path loads frame bytes as little-endian words, as they sit in memory
    raise ImportError("vehicle_ingest.can's numba kernel needs a little-endian machine")

_U8, _U16, _U24, _U32 = np.uint64(8), np.uint64(16), np.uint64(24), np.uint64(32)
_LOW6, _LOW8 = np.uint64(63), np.uint64(0xFF)
_Out = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # frame, signal, raw, value, integer


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


@intrinsic
def _load_le(typingctx: Any, data: Any, at: Any) -> tuple[Any, Any]:
    """The 8 bytes data[at : at + 8] as one unaligned little-endian load; the caller checks the bounds.

    numba's indexing checks each index for wraparound (a negative index), which stops LLVM from
    merging eight byte loads into one.
    """

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        byte = builder.gep(array.data, [args[1]])
        return builder.load(builder.bitcast(byte, ir.IntType(64).as_pointer()), align=1)

    return types.uint64(data, types.int64), codegen


@njit(cache=True, nogil=True, inline="always")
def _byte_swap(x: np.uint64) -> np.uint64:
    """The 8 bytes in reverse order: the big-endian reading of a little-endian word."""
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) << _U8) | ((x >> _U8) & np.uint64(0x00FF00FF00FF00FF))
    x = ((x & np.uint64(0x0000FFFF0000FFFF)) << _U16) | ((x >> _U16) & np.uint64(0x0000FFFF0000FFFF))
    return (x << _U32) | (x >> _U32)


@intrinsic
def _as_float64(typingctx: Any, bits: Any) -> tuple[Any, Any]:
    """The float64 whose IEEE bits are `bits` (uint64), without a round trip through memory."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@intrinsic
def _as_float32(typingctx: Any, bits: Any) -> tuple[Any, Any]:
    """The float32 whose IEEE bits are the low 32 bits of `bits` (uint64), widened to float64."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        low = builder.trunc(args[0], ir.IntType(32))
        return builder.fpext(builder.bitcast(low, ir.FloatType()), ir.DoubleType())

    return types.float64(types.uint64), codegen


@njit(cache=True, nogil=True, inline="always")
def _physical(
    bits: int, packed: np.uint64, factor_bits: np.uint64, offset_bits: np.uint64, fi: np.uint64, oi: np.uint64
) -> tuple[int, float, int]:
    """(raw as stored, value, exact integer value or 0) from a signal's raw bits and its record's fields."""
    factor, offset = _as_float64(factor_bits), _as_float64(offset_bits)
    if (packed >> np.uint64(9)) & np.uint64(1):  # IEEE float: the bits reinterpreted
        u = np.uint64(bits)
        x = _as_float32(u) if (packed & _LOW8) == np.uint64(32) else _as_float64(u)
        if factor != 1.0 or offset != 0.0:  # identity kept exact: -0.0 and NaN survive
            x = x * factor + offset
        return bits, x, np.int64(0)
    sext = np.int64((packed >> _U24) & _LOW6)
    r = (bits << sext) >> sext  # sign-extends bit n-1 when signed (arithmetic shift); no-op otherwise
    signed = (packed >> _U8) & np.uint64(1)
    xf = np.float64(np.uint64(r)) if r < 0 and not signed else np.float64(r)  # unsigned 64-bit past 2**63
    # Exact for integer signals (the manifest ensures no int64 overflow); factor and offset 0 for the others.
    xi = r * np.int64(fi) + np.int64(oi)
    # An integer signal's value is its exact value rounded once, as float(int) in cantools.
    integer = (packed >> np.uint64(10)) & np.uint64(1)
    return r, (np.float64(xi) if integer else xf * factor + offset), xi


@njit(cache=True, nogil=True, inline="always")
def _word_bits(order: np.uint64, mask: np.uint64, packed: np.uint64, le: np.uint64) -> int:
    """A word-path signal's raw bits from the 8 bytes at its first byte (`le`), byte-swapped for big
    endian without a branch (`order` is all ones for big endian)."""
    word = ((_byte_swap(le) ^ le) & order) ^ le
    return np.int64((word >> ((packed >> _U16) & _LOW6)) & mask)


@njit(cache=True, nogil=True, inline="always")
def _byte_bits(data: np.ndarray, base: int, order: np.uint64, layout: np.uint64, packed: np.uint64) -> int:
    """A signal's raw bits read byte by byte (only the bytes the signal occupies)."""
    pos, n = np.int64(layout & np.uint64(0xFFFF)), np.int64(packed & _LOW8)
    return _big_endian(data, base, pos, n) if order else _little_endian(data, base, pos, n)


@njit(cache=True, nogil=True)
def _rows(t: KernelTables, keys: np.ndarray, known: np.ndarray, msg_row: np.ndarray) -> int:
    """Each frame's message row (-1: unknown id) into `msg_row`; returns the most rows the frames can yield.

    The lookup is written out in the loop, not in a helper: a helper taking the arrays made numba
    update their reference counts per frame.
    """
    msg_key, std_lookup, msg_first = t.msg_key, t.std_lookup, t.msg_first
    n_messages, total = len(msg_key), 0
    for f in range(len(keys)):
        key = keys[f]
        if key < 2048:  # an 11-bit id: a table
            m = std_lookup[key]
        else:  # binary search: numba's np.searchsorted costs several times more here
            lo, hi = 0, n_messages
            while lo < hi:
                mid = (lo + hi) >> 1
                if msg_key[mid] < key:
                    lo = mid + 1
                else:
                    hi = mid
            m = lo if lo < n_messages and msg_key[lo] == key else -1
        msg_row[f] = m
        if m >= 0:
            known[f] = True
            total += msg_first[m + 1] - msg_first[m]
    return total


@njit(cache=True, nogil=True)
def _kernel(
    t: KernelTables, keys: np.ndarray, data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, known: np.ndarray
) -> _Out:
    """Both paths written out in the frame loop; helpers get scalars (see the module docstring)."""
    msg_row = np.empty(len(keys), np.int64)
    bound = _rows(t, keys, known, msg_row)
    out_frame, out_sig = np.empty(bound, np.int32), np.empty(bound, np.int32)
    out_raw, out_val, out_int = np.empty(bound, np.int64), np.empty(bound, np.float64), np.empty(bound, np.int64)
    msg_first, rec, mux_first, mux_values = t.msg_first, t.record, t.sig_mux_first, t.mux_values
    msg_word, msg_need, msg_read_end = t.msg_word, t.msg_need, t.msg_read_end
    present, raws = np.zeros(len(rec), np.bool_), np.zeros(len(rec), np.int64)  # byte path: switches read
    # Unsigned indices: numba checks a signed index for wraparound at every access.
    o, n_data = np.uint64(0), len(data)
    for f in range(len(keys)):
        m = msg_row[f]
        if m < 0:
            continue
        size, base = sizes[f], starts[f]
        lo, hi = np.uint64(msg_first[m]), np.uint64(msg_first[m + 1])
        if msg_word[m] and msg_need[m] <= size and base + msg_read_end[m] <= n_data:
            for s in range(lo, hi):  # the word path: its own loop, kept small for the registers
                packed = rec[s, 2]
                bits = _word_bits(rec[s, 0], rec[s, 1], packed, _load_le(data, base + np.int64(packed >> _U32)))
                r, x, xi = _physical(bits, packed, rec[s, 3], rec[s, 4], rec[s, 5], rec[s, 6])
                out_frame[o], out_sig[o], out_raw[o], out_val[o], out_int[o] = f, s, r, x, xi
                o += np.uint64(1)
            continue
        for s in range(lo, hi):  # the byte path: skips what the frame is too short for, and what no switch selects
            layout = rec[s, 7]
            parent = np.int64(layout >> _U32) - 1
            present[s] = False
            if np.int64((layout >> _U16) & _LOW8) > size or (parent >= 0 and not present[parent]):
                continue
            hit = parent < 0
            for k in range(mux_first[s], mux_first[s + np.uint64(1)]):
                hit = hit or mux_values[k] == raws[parent]
            if not hit:
                continue
            bits = _byte_bits(data, base, rec[s, 0], layout, rec[s, 2])
            r, x, xi = _physical(bits, rec[s, 2], rec[s, 3], rec[s, 4], rec[s, 5], rec[s, 6])
            present[s], raws[s] = True, r  # a switch's raw value, for the signals it gates (later rows)
            out_frame[o], out_sig[o], out_raw[o], out_val[o], out_int[o] = f, s, r, x, xi
            o += np.uint64(1)
    n = np.int64(o)
    return out_frame[:n], out_sig[:n], out_raw[:n], out_val[:n], out_int[:n]


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
    frame, signal, raw, value, integer = _kernel(manifest.kernel, keys, buf, starts, sizes, known)
    return SignalValues(frame, signal, raw, value, known, integer)
