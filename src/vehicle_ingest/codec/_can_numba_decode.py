"""Batch decoder for CAN frame payloads (kind 3): one numba kernel over all payloads.

Same structure as `_numba_decode`: pass 1 parses and validates every payload
and counts its frames and data bytes, allocating nothing; pass 2 re-parses
the OK payloads and writes the columns. The msgpack and varint readers are
the signals decoder's own, so both read the header bytes identically.

numba does no bounds checks: every declared length is checked against the
bytes left before use, and the data bin must hold exactly the bytes the DLC
codes declare before any of it is copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from vehicle_ingest.codec._limits import (
    CAN_CLASSIC_BYTES,
    CAN_EXT_ID_LIMIT,
    CAN_FD_BYTES,
    CAN_FD_FLAG,
    CAN_STD_ID_LIMIT,
    MAX_COUNT,
    TS_LIMIT,
)
from vehicle_ingest.codec._numba_decode import _ARRAY, _BIN, _STR, _event_bin, _read_len, _read_uint, _varint
from vehicle_ingest.codec._types import (
    FORMAT_VERSION,
    MAX_PAYLOAD_BYTES,
    VIN_LENGTH,
    CanBatch,
    FrameColumns,
    Kind,
    MessageColumns,
    Status,
)

__all__ = ["decode_can"]

_TIMESTAMPS = 1  # _event_bin's mode for a bin of zigzag deltas from base_ts

_OK, _MALFORMED, _BAD_VERSION, _BAD_KIND, _OVERSIZE, _EMPTY = (int(s) for s in Status)
_CAN = int(Kind.CAN)
_MAX_OFFSET = np.iinfo(np.int32).max
_STATUS, _ERROR, _KIND, _SEQ, _BASE_TS, _TS_MIN, _TS_MAX, _N_ITEMS, _N_BYTES = range(9)
_INFO_COLS = 9
_BODY_FIELDS = 6

# msg, ts, bus, arb_id, extended, fd, dlc, length, data_start, data
_FrameCols = tuple[
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
def _header(buf: np.ndarray, start: int, end: int, row: int, info: np.ndarray, vin: np.ndarray) -> tuple[int, int]:
    """As the signals decoder's header, but only kind 3 is known here: (status, error or body offset)."""
    n_fields, p = _read_len(buf, start, end, _ARRAY)
    if p < 0 or n_fields == 0:
        return _MALFORMED, start
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
    if kind != _CAN:
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
    info[row, _SEQ] = seq
    base, p = _read_uint(buf, q, end)
    if p < 0 or base < 0 or base >= TS_LIMIT:
        return _MALFORMED, q
    info[row, _BASE_TS] = base
    return _OK, p


@njit(cache=True, nogil=True)
def _id_bin(buf: np.ndarray, p: int, end: int, count: int, write: bool, out: np.ndarray, o: int) -> tuple[int, int]:
    """The ids bin: `id << 1 | extended` per frame. (error offset or -1, next position)."""
    n, q = _read_len(buf, p, end, _BIN)
    if q < 0:
        return p, 0
    p, bin_end = q, q + n
    for i in range(count):
        if p < bin_end and buf[p] < 0x80:
            u, q = np.int64(buf[p]), p + 1
        else:
            u, q = _varint(buf, p, bin_end)
            if q < 0:
                return p, 0
        if u >= (CAN_EXT_ID_LIMIT << 1) or ((u & 1) == 0 and u >= (CAN_STD_ID_LIMIT << 1)):
            return p, 0
        if write:
            out[o + i] = u
        p = q
    if p != bin_end:
        return p, 0
    return -1, p


@njit(cache=True, nogil=True)
def _byte_bin(buf: np.ndarray, p: int, end: int, count: int) -> tuple[int, int]:
    """A bin of exactly `count` bytes: (start of its data or -1, next position)."""
    n, q = _read_len(buf, p, end, _BIN)
    if q < 0 or n != count:
        return -1, 0
    return q, q + n


@njit(cache=True, nogil=True)
def _dlc_bin(buf: np.ndarray, p: int, end: int, count: int) -> tuple[int, int, int, int]:
    """The DLC bytes: (error offset or -1, start of their data, next position, data bytes declared)."""
    d, q = _byte_bin(buf, p, end, count)
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
def _body(
    buf: np.ndarray, p: int, end: int, base: int, row: int, write: bool, o: int, ob: int, cols: _FrameCols
) -> tuple[int, int, int, int, int, int]:
    """[count, ts, bus, ids, dlc, data]: (error offset or -1, next position, frames, data bytes, ts min, ts max)."""
    _f_msg, f_ts, _f_bus, f_id, _f_ext, _f_fd, _f_dlc, _f_len, _f_start, _f_data = cols
    n, q = _read_len(buf, p, end, _ARRAY)
    if q < 0 or n != _BODY_FIELDS:
        return p, 0, 0, 0, 0, 0
    count, p = _read_uint(buf, q, end)
    if p < 0 or count < 0 or count > MAX_COUNT:
        return q, 0, 0, 0, 0, 0
    err, p, tmin, tmax = _event_bin(buf, p, end, count, _TIMESTAMPS, base, write, f_ts, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    bus, q = _byte_bin(buf, p, end, count)
    if bus < 0:
        return p, 0, 0, 0, 0, 0
    err, p = _id_bin(buf, q, end, count, write, f_id, o)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    err, dlc, q, total = _dlc_bin(buf, p, end, count)
    if err >= 0:
        return err, 0, 0, 0, 0, 0
    data, p = _byte_bin(buf, q, end, total)
    if data < 0:
        return q, 0, 0, 0, 0, 0
    if write:
        _write_frames(buf, bus, dlc, data, count, row, o, ob, cols)
    return -1, p, count, total, tmin, tmax


@njit(cache=True, nogil=True)
def _write_frames(
    buf: np.ndarray, bus: int, dlc: int, data: int, count: int, row: int, o: int, ob: int, cols: _FrameCols
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
    ob: int,
    cols: _FrameCols,
) -> tuple[int, int]:
    status, body = _header(buf, start, end, row, info, vin)
    if status != _OK:
        return status, body
    err, p, frames, total, tmin, tmax = _body(buf, body, end, info[row, _BASE_TS], row, write, o, ob, cols)
    if err >= 0:
        return _MALFORMED, err
    if p != end:
        return _MALFORMED, p
    if frames == 0:
        return _EMPTY, body
    info[row, _N_ITEMS] = frames
    info[row, _N_BYTES] = total
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
    out_bytes: np.ndarray,
    info: np.ndarray,
    vin: np.ndarray,
    cols: _FrameCols,
) -> None:
    for row in range(len(oversize)):
        if write and info[row, _STATUS] != _OK:
            continue
        if oversize[row]:
            info[row, _STATUS] = _OVERSIZE
            info[row, _ERROR] = 0
            continue
        start = offs[row]
        status, err = _parse_message(
            buf, start, offs[row + 1], row, info, vin, write, out_start[row], out_bytes[row], cols
        )
        info[row, _STATUS] = status
        info[row, _ERROR] = err - start if err >= 0 else -1


def decode_can(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> CanBatch:
    """Decode a batch of CAN payloads: one status row per payload, the frames of the OK ones."""
    if max_payload_bytes > _MAX_OFFSET:
        raise ValueError(f"max_payload_bytes must be <= {_MAX_OFFSET} (error offsets are int32)")
    n = len(payloads)
    sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    oversize = sizes > max_payload_bytes
    buf = np.frombuffer(
        b"".join(b"" if big else p for p, big in zip(payloads, oversize.tolist(), strict=True)), np.uint8
    )
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(oversize, 0, sizes), out=offs[1:])
    info = np.zeros((n, _INFO_COLS), dtype=np.int64)
    vin = np.zeros((n, VIN_LENGTH), dtype=np.uint8)
    zeros = np.zeros(n, dtype=np.int64)
    _kernel(buf, offs, oversize, False, zeros, zeros, info, vin, _frame_arrays(0, 0))
    ok = info[:, _STATUS] == _OK
    frames, data = np.where(ok, info[:, _N_ITEMS], 0), np.where(ok, info[:, _N_BYTES], 0)
    cols = _frame_arrays(int(frames.sum()), int(data.sum()))
    _kernel(buf, offs, oversize, True, np.cumsum(frames) - frames, np.cumsum(data) - data, info, vin, cols)
    return CanBatch(_message_columns(info, vin), _frames(cols))


def _frame_arrays(n: int, n_bytes: int) -> _FrameCols:
    # ids as int64 while parsing (the kernel writes the id code, then splits it).
    return (
        np.empty(n, np.int32),
        np.empty(n, np.int64),
        np.empty(n, np.uint8),
        np.empty(n, np.int64),
        np.empty(n, np.bool_),
        np.empty(n, np.bool_),
        np.empty(n, np.uint8),
        np.empty(n, np.uint8),
        np.empty(n, np.int64),
        np.empty(n_bytes, np.uint8),
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


def _frames(cols: _FrameCols) -> FrameColumns:
    msg, ts, bus, ids, ext, fd, dlc, size, start, data = cols
    return FrameColumns(msg, ts, bus, ids.astype(np.uint32), ext, fd, dlc, size, start, data)
