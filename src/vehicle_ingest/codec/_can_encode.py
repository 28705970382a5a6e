"""Encoder for CAN frame payloads (kind 3, schemas/WIRE_FORMAT.md section 6).

Body: [count, ts, bus, ids, dlc, data]. Timestamps and ids are varint bins
written by one small numba kernel; bus numbers, DLC bytes and data bytes are
copied as they are.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from vehicle_ingest.codec._encode import _check_count, _header, _int_column, _pack, _put_varint
from vehicle_ingest.codec._limits import (
    CAN_EXT_ID_LIMIT,
    CAN_FD_BYTES,
    CAN_FD_FLAG,
    CAN_STD_ID_LIMIT,
    MAX_VARINT_BYTES,
    TS_LIMIT,
)
from vehicle_ingest.codec._types import Kind
from vehicle_ingest.errors import EncodeError

__all__ = ["dlc_for_length", "encode_can"]

# FD data length -> smallest DLC code carrying it; -1 where FD has no such length.
_FD_CODE = np.full(65, -1, dtype=np.int64)
_FD_CODE[CAN_FD_BYTES[::-1]] = np.arange(15, -1, -1)


def dlc_for_length(length: np.ndarray, fd: np.ndarray) -> np.ndarray:
    """DLC codes for data lengths: the length itself for classic frames (0..8), the FD code otherwise."""
    n = np.asarray(length, dtype=np.int64)
    if ((n < 0) | (n > 64)).any():
        raise EncodeError("CAN data length must be 0..64 bytes")
    code = np.where(fd, _FD_CODE[n], np.where(n <= 8, n, -1))
    bad = np.flatnonzero(code < 0)
    if len(bad):
        i = int(bad[0])
        what = "CAN FD allows 0-8, 12, 16, 20, 24, 32, 48, 64" if fd[i] else "classic CAN allows 0..8"
        raise EncodeError(f"frame {i}: data length {int(n[i])}: {what}")
    return code.astype(np.uint8)


def encode_can(
    vin: str,
    seq: int,
    base_ts_ms: int,
    ts_ms: ArrayLike,
    arb_id: ArrayLike,
    data: bytes | np.ndarray,
    length: ArrayLike,
    extended: ArrayLike | None = None,
    fd: ArrayLike | None = None,
    bus: ArrayLike | None = None,
) -> bytes:
    """One CAN payload (kind 3): frame i is (ts_ms[i], bus[i], arb_id[i], extended[i], fd[i], its data).

    `data` holds every frame's data back to back, `length[i]` bytes each.
    """
    header = _header(Kind.CAN, vin, seq, base_ts_ms)
    ts, ids, size = _int_column("ts_ms", ts_ms), _int_column("arb_id", arb_id), _int_column("length", length)
    count = _check_count("frames", len(ts), (len(ids), len(size)))
    ext = _flags("extended", extended, count)
    is_fd = _flags("fd", fd, count)
    buses = _int_column("bus", np.zeros(count, np.int64) if bus is None else bus)
    if len(buses) != count or ((buses < 0) | (buses > 255)).any():
        raise EncodeError("bus must hold one number 0..255 per frame")
    raw = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if int(size.sum()) != len(raw):
        raise EncodeError(f"frame lengths add up to {int(size.sum())} bytes, data holds {len(raw)}")
    dlc = dlc_for_length(size, is_fd) | np.where(is_fd, CAN_FD_FLAG, 0).astype(np.uint8)
    bins = np.empty((2, count * MAX_VARINT_BYTES), dtype=np.uint8)
    bad_ts, bad_id, n_ts, n_id = _frame_bins(ts, ids, ext, header[4], bins)
    if bad_ts >= 0:
        raise EncodeError(f"frames: ts_ms[{bad_ts}]={ts[bad_ts]} is outside [0, 2**48)")
    if bad_id >= 0:
        limit = "2**29 (extended)" if ext[bad_id] else "2**11 (standard)"
        raise EncodeError(f"frames: arb_id[{bad_id}]=0x{ids[bad_id]:x} is not below {limit}")
    body = [
        count,
        bins[0, :n_ts].tobytes(),
        buses.astype(np.uint8).tobytes(),
        bins[1, :n_id].tobytes(),
        dlc.tobytes(),
        raw.astype(np.uint8, copy=False).tobytes(),
    ]
    return _pack([*header, body])


def _flags(name: str, values: ArrayLike | None, count: int) -> np.ndarray:
    out = np.zeros(count, dtype=bool) if values is None else np.asarray(values, dtype=bool)
    if out.shape != (count,):
        raise EncodeError(f"{name} must hold one flag per frame ({count}), got shape {out.shape}")
    return out


@njit(cache=True, nogil=True)
def _frame_bins(
    ts: np.ndarray, ids: np.ndarray, ext: np.ndarray, base: int, out: np.ndarray
) -> tuple[int, int, int, int]:
    """Timestamp deltas (zigzag) into out[0], `id << 1 | extended` into out[1].

    Returns (first bad ts index or -1, first bad id index or -1, ts bytes, id bytes).
    """
    n_ts, n_id = 0, 0
    prev = base
    for i in range(len(ts)):
        if ts[i] < 0 or ts[i] >= TS_LIMIT:
            return i, -1, 0, 0
        limit = CAN_EXT_ID_LIMIT if ext[i] else CAN_STD_ID_LIMIT
        if ids[i] < 0 or ids[i] >= limit:
            return -1, i, 0, 0
        delta = ts[i] - prev
        prev = ts[i]
        n_ts = _put_varint(out, 0, n_ts, (delta << 1) ^ (delta >> 63))
        n_id = _put_varint(out, 1, n_id, (ids[i] << 1) | (1 if ext[i] else 0))
    return -1, -1, n_ts, n_id
