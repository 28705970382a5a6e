"""Reference decoder for CAN frame payloads (kind 3): the executable spec, in plain Python.

It reads with the signals reference decoder's cursor (no numba, no msgpack-python),
so the parity test compares two independent readings of schemas/WIRE_FORMAT.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vehicle_ingest.codec._limits import (
    CAN_CLASSIC_BYTES,
    CAN_EXT_ID_LIMIT,
    CAN_FD_BYTES,
    CAN_FD_FLAG,
    CAN_STD_ID_LIMIT,
    MAX_COUNT,
)
from vehicle_ingest.codec._reference_decode import (
    HEADER_FIELDS,
    MAX_ERROR_OFFSET,
    _check_ts,
    _Cursor,
    _finish,
    _RejectError,
    _unzigzag,
    _varints,
)
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

__all__ = ["decode_can_reference"]

BODY_FIELDS = 6


@dataclass
class _Frame:
    ts: int
    bus: int
    arb_id: int
    extended: bool
    fd: bool
    dlc: int
    data: bytes


@dataclass
class _Message:
    status: Status = Status.OK
    error_offset: int = -1
    kind: int = 0
    vin: bytes = b""
    seq: int = 0
    base_ts: int = 0
    frames: list[_Frame] = field(default_factory=list)


def _exact_bytes(cur: _Cursor, count: int) -> bytes:
    start = cur.pos
    lo, hi = cur.bin_span()
    if hi - lo != count:
        raise cur.fail(start)
    return cur.data[lo:hi]


def _ids(cur: _Cursor, count: int) -> list[tuple[int, bool]]:
    out = []
    for offset, u in _varints(cur.data, *cur.bin_span(), count):
        extended = bool(u & 1)
        if (u >> 1) >= (CAN_EXT_ID_LIMIT if extended else CAN_STD_ID_LIMIT):
            raise cur.fail(offset)
        out.append((u >> 1, extended))
    return out


def _dlcs(cur: _Cursor, count: int) -> list[tuple[int, bool, int]]:
    """(dlc, fd, data length) per frame."""
    raw = _exact_bytes(cur, count)
    first = cur.pos - count
    out = []
    for i, b in enumerate(raw):
        if b & ~(CAN_FD_FLAG | 0x0F):
            raise cur.fail(first + i)
        fd = bool(b & CAN_FD_FLAG)
        out.append((b & 0x0F, fd, int((CAN_FD_BYTES if fd else CAN_CLASSIC_BYTES)[b & 0x0F])))
    return out


def _body(cur: _Cursor, msg: _Message, body_offset: int) -> None:
    if cur.array() != BODY_FIELDS:
        raise cur.fail(body_offset)
    count = cur.uint(MAX_COUNT + 1)
    ts, t = [], msg.base_ts
    for offset, u in _varints(cur.data, *cur.bin_span(), count):
        t = _check_ts(t + _unzigzag(u), offset)
        ts.append(t)
    buses = _exact_bytes(cur, count)
    ids = _ids(cur, count)
    dlcs = _dlcs(cur, count)
    data = _exact_bytes(cur, sum(n for _, _, n in dlcs))
    at = 0
    for i in range(count):
        dlc, fd, n = dlcs[i]
        msg.frames.append(_Frame(ts[i], buses[i], ids[i][0], ids[i][1], fd, dlc, data[at : at + n]))
        at += n
    _finish(cur, body_offset, empty=count == 0)


def _parse(data: bytes, msg: _Message) -> None:
    cur = _Cursor(data)
    n_fields = cur.array()
    if n_fields == 0:
        raise cur.fail(0)
    version_offset = cur.pos
    if cur.uint() != FORMAT_VERSION:
        raise _RejectError(Status.UNSUPPORTED_VERSION, version_offset)
    if n_fields != HEADER_FIELDS:
        raise cur.fail(0)
    kind_offset = cur.pos
    if cur.uint() != Kind.CAN:
        raise _RejectError(Status.UNKNOWN_KIND, kind_offset)
    msg.kind = Kind.CAN
    vin_offset = cur.pos
    vin = cur.raw_str()
    if len(vin) != VIN_LENGTH:
        raise cur.fail(vin_offset)
    msg.vin = vin
    msg.seq = cur.uint()
    msg.base_ts = cur.uint(1 << 48)
    _body(cur, msg, cur.pos)


def _decode_one(payload: bytes, max_payload_bytes: int) -> _Message:
    msg = _Message()
    try:
        if len(payload) > max_payload_bytes:
            raise _RejectError(Status.OVERSIZE, 0)
        _parse(bytes(payload), msg)
    except _RejectError as rej:
        msg.status, msg.error_offset, msg.frames = rej.status, rej.offset, []
    return msg


def decode_can_reference(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> CanBatch:
    """Same output as `decode_can`, bit for bit."""
    if max_payload_bytes > MAX_ERROR_OFFSET:
        raise ValueError(f"max_payload_bytes must be <= {MAX_ERROR_OFFSET} (error offsets are int32)")
    msgs = [_decode_one(p, max_payload_bytes) for p in payloads]
    times = [[f.ts for f in m.frames] for m in msgs]
    messages = MessageColumns(
        status=np.array([m.status for m in msgs], dtype=np.uint8),
        error_offset=np.array([m.error_offset for m in msgs], dtype=np.int32),
        kind=np.array([m.kind for m in msgs], dtype=np.uint8),
        vin=np.array([m.vin for m in msgs], dtype="S17"),
        seq=np.array([m.seq for m in msgs], dtype=np.uint64),
        base_ts=np.array([m.base_ts for m in msgs], dtype=np.int64),
        ts_min=np.array([min(t, default=0) for t in times], dtype=np.int64),
        ts_max=np.array([max(t, default=0) for t in times], dtype=np.int64),
        n_items=np.array([len(m.frames) for m in msgs], dtype=np.int32),
    )
    return CanBatch(messages, _frame_columns(msgs))


def _frame_columns(msgs: list[_Message]) -> FrameColumns:
    rows = [(i, f) for i, m in enumerate(msgs) for f in m.frames]
    lengths = np.array([len(f.data) for _, f in rows], dtype=np.int64)
    return FrameColumns(
        msg=np.array([i for i, _ in rows], dtype=np.int32),
        ts=np.array([f.ts for _, f in rows], dtype=np.int64),
        bus=np.array([f.bus for _, f in rows], dtype=np.uint8),
        arb_id=np.array([f.arb_id for _, f in rows], dtype=np.uint32),
        extended=np.array([f.extended for _, f in rows], dtype=bool),
        fd=np.array([f.fd for _, f in rows], dtype=bool),
        dlc=np.array([f.dlc for _, f in rows], dtype=np.uint8),
        length=lengths.astype(np.uint8),
        data_start=np.cumsum(lengths) - lengths,
        data=np.frombuffer(b"".join(f.data for _, f in rows), dtype=np.uint8).copy(),
    )
