"""The reference twins, the executable spec: `decode_reference` and `decode_can_reference`.

Same signatures and output as `decode_numba` / `decode_can_numba`, bit for
bit, read with the plain-Python readers of `_msgpack_reference` one payload
at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vehicle_ingest.codec._can_reference import Frame, can_body
from vehicle_ingest.codec._msgpack_reference import Cursor, Header, RejectError, read_header
from vehicle_ingest.codec._signals_reference import Event, Sample, events_body, signals_body
from vehicle_ingest.codec._types import (
    MAX_PAYLOAD_BYTES,
    VIN_LENGTH,
    CanBatch,
    DecodedBatch,
    EventColumns,
    FrameColumns,
    Kind,
    MessageColumns,
    SampleColumns,
    Status,
)
from vehicle_ingest.codec._wire import CAN_KINDS, MAX_ERROR_OFFSET, SAMPLE_KINDS

__all__ = ["decode_can_reference", "decode_reference"]


@dataclass
class _Message:
    """What one payload yields; items only when it is OK."""

    status: Status = Status.OK
    error_offset: int = -1
    header: Header = field(default_factory=Header)
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)

    def times(self) -> list[int]:
        return [s[1] for s in self.samples] + [e[1] for e in self.events] + [f.ts for f in self.frames]


def decode_reference(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> DecodedBatch:
    """Decode every signals/events payload; same output as `decode_numba`, bit for bit."""
    msgs = _decode_all(payloads, max_payload_bytes, SAMPLE_KINDS)
    return DecodedBatch(_message_columns(msgs), _sample_columns(msgs), _event_columns(msgs))


def decode_can_reference(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> CanBatch:
    """Decode every CAN payload; same output as `decode_can_numba`, bit for bit."""
    msgs = _decode_all(payloads, max_payload_bytes, CAN_KINDS)
    return CanBatch(_message_columns(msgs), _frame_columns(msgs))


def _decode_all(payloads: Sequence[bytes], max_payload_bytes: int, kinds: int) -> list[_Message]:
    if max_payload_bytes > MAX_ERROR_OFFSET:
        raise ValueError(f"max_payload_bytes must be <= {MAX_ERROR_OFFSET} (error offsets are int32)")
    return [_decode_one(p, max_payload_bytes, kinds) for p in payloads]


def _decode_one(payload: bytes, max_payload_bytes: int, kinds: int) -> _Message:
    msg = _Message()
    try:
        if len(payload) > max_payload_bytes:
            raise RejectError(Status.OVERSIZE, 0)
        _parse(Cursor(bytes(payload)), msg, kinds)
    except RejectError as rej:
        msg.status, msg.error_offset = rej.status, rej.offset
        msg.samples, msg.events, msg.frames = [], [], []
    return msg


def _parse(cur: Cursor, msg: _Message, kinds: int) -> None:
    read_header(cur, msg.header, kinds)
    body_offset, base_ts = cur.pos, msg.header.base_ts
    if msg.header.kind == Kind.SIGNALS:
        msg.samples = signals_body(cur, base_ts)
    elif msg.header.kind == Kind.EVENTS:
        msg.events = events_body(cur, base_ts, body_offset)
    else:
        msg.frames = can_body(cur, base_ts, body_offset)
    # Trailing bytes outrank EMPTY: EMPTY is only said of an otherwise well-formed message.
    if cur.pos != len(cur.data):
        raise cur.fail(cur.pos)
    if not (msg.samples or msg.events or msg.frames):
        raise RejectError(Status.EMPTY, body_offset)


def _message_columns(msgs: list[_Message]) -> MessageColumns:
    times = [m.times() for m in msgs]
    return MessageColumns(
        status=np.array([m.status for m in msgs], dtype=np.uint8),
        error_offset=np.array([m.error_offset for m in msgs], dtype=np.int32),
        kind=np.array([m.header.kind for m in msgs], dtype=np.uint8),
        vin=np.array([m.header.vin for m in msgs], dtype=f"S{VIN_LENGTH}"),
        seq=np.array([m.header.seq for m in msgs], dtype=np.uint64),
        base_ts=np.array([m.header.base_ts for m in msgs], dtype=np.int64),
        ts_min=np.array([min(t, default=0) for t in times], dtype=np.int64),
        ts_max=np.array([max(t, default=0) for t in times], dtype=np.int64),
        n_items=np.array([len(t) for t in times], dtype=np.int32),
    )


def _sample_columns(msgs: list[_Message]) -> SampleColumns:
    rows = [(i, *s) for i, m in enumerate(msgs) for s in m.samples]
    return SampleColumns(
        msg=np.array([r[0] for r in rows], dtype=np.int32),
        signal_id=np.array([r[1] for r in rows], dtype=np.uint16),
        ts=np.array([r[2] for r in rows], dtype=np.int64),
        value=np.array([r[3] for r in rows], dtype=np.float64),
    )


def _event_columns(msgs: list[_Message]) -> EventColumns:
    rows = [(i, *e) for i, m in enumerate(msgs) for e in m.events]
    text = np.empty(len(rows), dtype=object)
    text[:] = [r[4] for r in rows]
    return EventColumns(
        msg=np.array([r[0] for r in rows], dtype=np.int32),
        event_id=np.array([r[1] for r in rows], dtype=np.uint16),
        ts=np.array([r[2] for r in rows], dtype=np.int64),
        value=np.array([r[3] for r in rows], dtype=np.int64),
        text=text,
    )


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
