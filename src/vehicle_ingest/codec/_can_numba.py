"""numba parser of the CAN body (kind 3): [count, ts, bus, ids, dlc, data].

Same return shape as the signals and events bodies. The data bin must hold
exactly the bytes the DLC codes declare before any of it is copied.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vehicle_ingest.codec._limits import CAN_CLASSIC_BYTES, CAN_FD_BYTES, CAN_FD_FLAG, MAX_COUNT, TS_LIMIT
from vehicle_ingest.codec._msgpack_numba import (
    ARRAY,
    CAN_ID,
    CAN_ID_LIMIT,
    DELTA,
    read_byte_bin,
    read_len,
    read_uint,
    read_varint_bin,
)
from vehicle_ingest.codec._wire import CAN_BODY_FIELDS

__all__ = ["FrameCols", "can_body"]

# msg, ts, bus, arb_id, extended, fd, dlc, length, data_start, data
FrameCols = tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]


@njit(cache=True, nogil=True)
def _dlc_bin(buf: np.ndarray, p: int, end: int, count: int) -> tuple[int, int, int, int]:
    """The DLC bytes: (error offset or -1, start of their data, next position, data bytes declared)."""
    d, q = read_byte_bin(buf, p, end, count)
    if d < 0:
        return p, 0, 0, 0
    total = 0
    for i in range(count):
        b = np.int64(buf[d + i])
        if b & ~(CAN_FD_FLAG | 0x0F):
            return d + i, 0, 0, 0
        total += CAN_FD_BYTES[b & 0x0F] if b & CAN_FD_FLAG else CAN_CLASSIC_BYTES[b & 0x0F]
    return -1, d, q, total


@njit(cache=True, nogil=True)
def can_body(
    buf: np.ndarray, p: int, end: int, base: int, row: int, write: bool, o: int, ob: int, cols: FrameCols
) -> tuple[int, int, int, int, int, int]:
    """The frames; their data bytes go to `cols`' data column from `ob` on."""
    f_ts, f_id = cols[1], cols[3]
    n, q = read_len(buf, p, end, ARRAY)
    if q < 0 or n != CAN_BODY_FIELDS:
        return p, 0, 0, 0, 0, 0
    count, p = read_uint(buf, q, end)
    if p < 0 or count < 0 or count > MAX_COUNT:
        return q, 0, 0, 0, 0, 0
    err, p, tmin, tmax = read_varint_bin(buf, p, end, count, DELTA, base, 0, TS_LIMIT, write, f_ts, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    bus, q = read_byte_bin(buf, p, end, count)
    if bus < 0:
        return p, 0, 0, 0, 0, 0
    err, p, _, _ = read_varint_bin(buf, q, end, count, CAN_ID, 0, 0, CAN_ID_LIMIT, write, f_id, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    err, dlc, q, total = _dlc_bin(buf, p, end, count)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    data, p = read_byte_bin(buf, q, end, total)
    if data < 0:
        return q, 0, 0, 0, 0, 0
    if write:
        _write_frames(buf, bus, dlc, data, count, row, o, ob, cols)
    return -1, p, count, total, tmin, tmax


@njit(cache=True, nogil=True)
def _write_frames(
    buf: np.ndarray, bus: int, dlc: int, data: int, count: int, row: int, o: int, ob: int, cols: FrameCols
) -> None:
    """Pass 2: split the id codes, expand the DLC bytes, copy the data bytes."""
    f_msg, _f_ts, f_bus, f_id, f_ext, f_fd, f_dlc, f_len, f_start, f_data = cols
    at = ob
    for i in range(count):
        code = f_id[o + i]
        f_ext[o + i] = (code & 1) == 1
        f_id[o + i] = code >> 1
        b = np.int64(buf[dlc + i])
        fd = (b & CAN_FD_FLAG) != 0
        size = CAN_FD_BYTES[b & 0x0F] if fd else CAN_CLASSIC_BYTES[b & 0x0F]
        f_msg[o + i] = row
        f_bus[o + i] = buf[bus + i]
        f_fd[o + i] = fd
        f_dlc[o + i] = b & 0x0F
        f_len[o + i] = size
        f_start[o + i] = at
        at += size
    f_data[ob:at] = buf[data : data + (at - ob)]
