"""The one numba batch kernel of wire format v1, for every kind.

The payloads are joined into one uint8 buffer. Pass 1 (`write` False) parses
and validates every message and counts its items and data bytes, allocating
nothing; the caller then allocates the exact output columns and pass 2
re-parses the OK messages with `write` True. Both passes share every parse
function, so they cannot disagree.

A decoder passes the kinds it accepts as a bit set: `decode` takes signals and
events, `decode_can` CAN frames; any other kind is UNKNOWN_KIND. Both call
this kernel with the same argument types, so it is compiled once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vehicle_ingest.codec._can_numba import FrameCols, can_body
from vehicle_ingest.codec._msgpack_numba import MALFORMED, OK, read_header
from vehicle_ingest.codec._signals_numba import EventCols, SampleCols, events_body, signals_body
from vehicle_ingest.codec._types import VIN_LENGTH, Kind, Status

__all__ = [
    "BASE_TS",
    "ERROR",
    "INFO_COLS",
    "KIND",
    "N_BYTES",
    "N_ITEMS",
    "SEQ",
    "STATUS",
    "TS_MAX",
    "TS_MIN",
    "kernel",
]

# Columns of the per-message int64 matrix the kernel fills.
STATUS, ERROR, KIND, SEQ, BASE_TS, TS_MIN, TS_MAX, N_ITEMS, N_BYTES = range(9)
INFO_COLS = 9

_SIGNALS, _EVENTS = int(Kind.SIGNALS), int(Kind.EVENTS)
_OVERSIZE, _EMPTY = int(Status.OVERSIZE), int(Status.EMPTY)


@njit(cache=True, nogil=True)
def _header(
    buf: np.ndarray, start: int, end: int, kinds: int, row: int, info: np.ndarray, vin: np.ndarray
) -> tuple[int, int]:
    """The header into the message's info row and VIN: (status, error or body offset)."""
    status, at, kind, vin_at, seq, base = read_header(buf, start, end, kinds)
    info[row, KIND] = kind
    if vin_at >= 0:
        vin[row, :] = buf[vin_at : vin_at + VIN_LENGTH]
    info[row, SEQ] = seq  # raw bits: the column is viewed as uint64
    info[row, BASE_TS] = base
    return status, at


@njit(cache=True, nogil=True)
def _parse_message(
    buf: np.ndarray,
    start: int,
    end: int,
    kinds: int,
    row: int,
    info: np.ndarray,
    vin: np.ndarray,
    write: bool,
    o: int,
    ob: int,
    cols: tuple[SampleCols, EventCols, FrameCols],
) -> tuple[int, int]:
    """(status, absolute error offset or -1); fills the message's info row."""
    status, body = _header(buf, start, end, kinds, row, info, vin)
    if status != OK:
        return status, body
    base, kind = info[row, BASE_TS], info[row, KIND]
    if kind == _SIGNALS:
        err, p, n_items, n_bytes, tmin, tmax = signals_body(buf, body, end, base, row, write, o, cols[0])
    elif kind == _EVENTS:
        err, p, n_items, n_bytes, tmin, tmax = events_body(buf, body, end, base, row, write, o, cols[1])
    else:
        err, p, n_items, n_bytes, tmin, tmax = can_body(buf, body, end, base, row, write, o, ob, cols[2])
    if err >= 0:
        return MALFORMED, err
    if p != end:
        return MALFORMED, p  # trailing bytes
    if n_items == 0:
        return _EMPTY, body  # only said of an otherwise well-formed message
    info[row, N_ITEMS] = n_items
    info[row, N_BYTES] = n_bytes
    info[row, TS_MIN] = tmin
    info[row, TS_MAX] = tmax
    return OK, -1


@njit(cache=True, nogil=True)
def kernel(
    buf: np.ndarray,
    offs: np.ndarray,
    oversize: np.ndarray,
    kinds: int,
    write: bool,
    out_start: np.ndarray,
    out_bytes: np.ndarray,
    info: np.ndarray,
    vin: np.ndarray,
    cols: tuple[SampleCols, EventCols, FrameCols],
) -> None:
    """Pass 1 (write=False) parses every message; pass 2 re-parses the OK ones and fills the columns.

    `out_start[row]` is where the message's items start in its kind's columns, `out_bytes[row]`
    where its CAN data bytes start.
    """
    for row in range(len(oversize)):
        if write and info[row, STATUS] != OK:
            continue
        if oversize[row]:
            info[row, STATUS] = _OVERSIZE
            info[row, ERROR] = 0
            continue
        start = offs[row]
        status, err = _parse_message(
            buf, start, offs[row + 1], kinds, row, info, vin, write, out_start[row], out_bytes[row], cols
        )
        info[row, STATUS] = status
        info[row, ERROR] = err - start if err >= 0 else -1
