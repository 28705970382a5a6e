"""Plain-Python parser of the CAN body (kind 3): [count, ts, bus, ids, dlc, data]."""

from __future__ import annotations

from dataclasses import dataclass

from vehicle_ingest.codec._limits import (
    CAN_CLASSIC_BYTES,
    CAN_EXT_ID_LIMIT,
    CAN_FD_BYTES,
    CAN_FD_FLAG,
    MAX_COUNT,
    TS_LIMIT,
)
from vehicle_ingest.codec._msgpack_reference import Cursor, read_bin, read_bytes
from vehicle_ingest.codec._wire import CAN_BODY_FIELDS, BinMode

__all__ = ["Frame", "can_body"]


@dataclass
class Frame:
    ts: int
    bus: int
    arb_id: int
    extended: bool
    fd: bool
    dlc: int
    data: bytes


def _dlcs(cur: Cursor, count: int) -> list[tuple[int, bool, int]]:
    """(dlc, fd, data length) per frame."""
    raw = read_bytes(cur, count)
    first = cur.pos - count
    out = []
    for i, b in enumerate(raw):
        if b & ~(CAN_FD_FLAG | 0x0F):
            raise cur.fail(first + i)
        fd = bool(b & CAN_FD_FLAG)
        out.append((b & 0x0F, fd, int((CAN_FD_BYTES if fd else CAN_CLASSIC_BYTES)[b & 0x0F])))
    return out


def can_body(cur: Cursor, base_ts: int, body_offset: int) -> list[Frame]:
    if cur.array() != CAN_BODY_FIELDS:
        raise cur.fail(body_offset)
    count = cur.uint(MAX_COUNT + 1)
    ts = read_bin(cur, BinMode.DELTA, count, 0, TS_LIMIT, start=base_ts)
    buses = read_bytes(cur, count)
    ids = read_bin(cur, BinMode.CAN_ID, count, 0, CAN_EXT_ID_LIMIT << 1)
    dlcs = _dlcs(cur, count)
    data = read_bytes(cur, sum(n for _, _, n in dlcs))
    frames, at = [], 0
    for i in range(count):
        dlc, fd, n = dlcs[i]
        frames.append(Frame(ts[i], buses[i], ids[i] >> 1, bool(ids[i] & 1), fd, dlc, data[at : at + n]))
        at += n
    return frames
