"""Reference twin of the numba signal decoder: plain Python, one int per frame.

It reads a signal by turning the frame into one big integer (little- or
big-endian) and shifting, a different method from the kernel's byte loop, so
the parity test compares two independent readings of the same layout.
"""

from __future__ import annotations

import struct

import numpy as np

from vehicle_ingest.can._frames_numba import frame_spans
from vehicle_ingest.can._types import SignalValues
from vehicle_ingest.can.manifest import Manifest

__all__ = ["decode_frames_reference", "read_raw"]


def read_raw(frame: bytes, pos: int, length: int, big_endian: bool) -> int:
    """Unsigned raw bits of one signal; the frame must hold the signal's bytes."""
    total = 8 * len(frame)
    if big_endian:
        return (int.from_bytes(frame, "big") >> (total - pos - length)) & ((1 << length) - 1)
    return (int.from_bytes(frame, "little") >> pos) & ((1 << length) - 1)


def _int64_bits(v: int) -> int:
    """An unsigned 64-bit value as the int64 with the same bits."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _physical(m: Manifest, s: int, bits: int) -> tuple[int, float, int]:
    """(raw as stored: int64 bits, value, exact integer value or 0)."""
    n = int(m.sig_len[s])
    if m.sig_float[s]:
        x = struct.unpack("<f" if n == 32 else "<d", bits.to_bytes(n // 8, "little"))[0]
        raw = _int64_bits(bits)
    else:
        raw = bits - (1 << n) if m.sig_signed[s] and bits >> (n - 1) else bits
        x = float(raw)
        if m.sig_integer[s]:  # Python ints: exact at any size; one rounding to float, as cantools' float(int)
            exact = raw * int(m.sig_factor_int[s]) + int(m.sig_offset_int[s])
            return _int64_bits(raw), float(exact), exact
        raw = _int64_bits(raw)
    factor, offset = float(m.sig_factor[s]), float(m.sig_offset[s])
    if factor != 1.0 or offset != 0.0:
        x = x * factor + offset
    return raw, x, 0


def _gated_in(m: Manifest, s: int, raws: dict[int, int]) -> bool:
    parent = int(m.sig_mux_parent[s])
    if parent < 0:
        return True
    if parent not in raws:
        return False
    values = m.mux_values[m.sig_mux_first[s] : m.sig_mux_first[s + 1]].tolist()
    return raws[parent] in values


def decode_frames_reference(manifest: Manifest, keys: np.ndarray, data: np.ndarray, length: np.ndarray) -> SignalValues:
    """Same contract and output as `decode_frames_numba`, bit for bit."""
    m = manifest
    buf, starts = frame_spans(data, length)
    rows: list[tuple[int, int, int, float, int]] = []
    known = np.zeros(len(keys), dtype=bool)
    row_of = {int(k): i for i, k in enumerate(m.msg_key.tolist())}
    for f, key in enumerate(np.asarray(keys, dtype=np.uint32).tolist()):
        msg = row_of.get(key)
        if msg is None:
            continue
        known[f] = True
        frame = bytes(buf[starts[f] : starts[f] + int(length[f])])
        raws: dict[int, int] = {}  # switch rows read in this frame: their raw values
        for s in range(int(m.msg_first[msg]), int(m.msg_first[msg + 1])):
            if m.sig_bytes[s] > len(frame) or not _gated_in(m, s, raws):
                continue
            raw, value, exact = _physical(
                m, s, read_raw(frame, int(m.sig_pos[s]), int(m.sig_len[s]), bool(m.sig_big_endian[s]))
            )
            raws[s] = raw
            rows.append((f, s, raw, value, exact))
    return SignalValues(
        frame=np.array([r[0] for r in rows], dtype=np.int32),
        signal=np.array([r[1] for r in rows], dtype=np.int32),
        raw=np.array([r[2] for r in rows], dtype=np.int64),
        value=np.array([r[3] for r in rows], dtype=np.float64),
        known=known,
        integer=np.array([r[4] for r in rows], dtype=np.int64),
    )
