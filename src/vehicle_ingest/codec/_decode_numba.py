"""The numba twins: `decode_numba` (signals and events) and `decode_can_numba` (CAN frames).

Both run the one kernel of `_kernel_numba` over the joined payloads, each
accepting its own kinds; this module only prepares the buffer, allocates the
exact columns between the two passes, and builds the typed batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vehicle_ingest.codec._can_numba import FrameCols
from vehicle_ingest.codec._kernel_numba import (
    BASE_TS,
    ERROR,
    INFO_COLS,
    KIND,
    N_BYTES,
    N_ITEMS,
    SEQ,
    STATUS,
    TS_MAX,
    TS_MIN,
    kernel,
)
from vehicle_ingest.codec._signals_numba import EventCols, SampleCols
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

__all__ = ["decode_can_numba", "decode_numba"]

_OK = int(Status.OK)
_Cols = tuple[SampleCols, EventCols, FrameCols]


@dataclass(frozen=True, slots=True)
class _Decoded:
    """What both passes produced: the message columns, every kind's item columns, the joined bytes."""

    messages: MessageColumns
    cols: _Cols
    joined: bytes


def decode_numba(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> DecodedBatch:
    """Decode a batch: one status row per payload, the samples/events of the OK ones."""
    out = _decode(payloads, max_payload_bytes, SAMPLE_KINDS)
    return DecodedBatch(out.messages, _samples(out.cols[0]), _events(out.cols[1], out.joined))


def decode_can_numba(payloads: Sequence[bytes], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> CanBatch:
    """Decode a batch of CAN payloads: one status row per payload, the frames of the OK ones."""
    out = _decode(payloads, max_payload_bytes, CAN_KINDS)
    return CanBatch(out.messages, _frames(out.cols[2]))


def _decode(payloads: Sequence[bytes], max_payload_bytes: int, kinds: int) -> _Decoded:
    if max_payload_bytes > MAX_ERROR_OFFSET:
        raise ValueError(f"max_payload_bytes must be <= {MAX_ERROR_OFFSET} (error offsets are int32)")
    n = len(payloads)
    sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    oversize = sizes > max_payload_bytes
    # Oversize payloads are never parsed, so they are not copied either.
    joined = b"".join(b"" if big else p for p, big in zip(payloads, oversize.tolist(), strict=True))
    buf = np.frombuffer(joined, dtype=np.uint8)
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(oversize, 0, sizes), out=offs[1:])
    info = np.zeros((n, INFO_COLS), dtype=np.int64)
    vin = np.zeros((n, VIN_LENGTH), dtype=np.uint8)
    zeros = np.zeros(n, dtype=np.int64)
    kernel(buf, offs, oversize, kinds, False, zeros, zeros, info, vin, _columns(info))
    cols = _columns(info, allocate=True)
    kernel(buf, offs, oversize, kinds, True, _starts(info, N_ITEMS), _starts(info, N_BYTES), info, vin, cols)
    return _Decoded(_message_columns(info, vin), cols, joined)


def _mine(info: np.ndarray, kind: int, column: int) -> np.ndarray:
    """Per message: `column` (items or data bytes) when it is an OK message of `kind`, else 0."""
    return np.where((info[:, STATUS] == _OK) & (info[:, KIND] == kind), info[:, column], 0)


def _starts(info: np.ndarray, column: int) -> np.ndarray:
    """Where each OK message's items (or data bytes) start in its kind's output columns."""
    starts = np.zeros(len(info), dtype=np.int64)
    for kind in Kind:
        counts = _mine(info, kind, column)
        mine = info[:, KIND] == kind
        starts[mine] = (np.cumsum(counts) - counts)[mine]
    return starts


def _columns(info: np.ndarray, allocate: bool = False) -> _Cols:
    """Every kind's output columns: empty for pass 1, sized from pass 1's counts for pass 2."""

    def total(kind: Kind, column: int = N_ITEMS) -> int:
        return int(_mine(info, kind, column).sum()) if allocate else 0

    n_s, n_e, n_f = total(Kind.SIGNALS), total(Kind.EVENTS), total(Kind.CAN)
    samples = (np.empty(n_s, np.int32), np.empty(n_s, np.uint16), np.empty(n_s, np.int64), np.empty(n_s))
    # Event ids and CAN ids as int64 while parsing (one bin reader serves every bin); cast afterwards.
    events = (
        np.empty(n_e, np.int32),
        np.empty(n_e, np.int64),
        np.empty(n_e, np.int64),
        np.empty(n_e, np.int64),
        np.empty((n_e, 2), np.int64),
    )
    frames = (
        np.empty(n_f, np.int32),
        np.empty(n_f, np.int64),
        np.empty(n_f, np.uint8),
        np.empty(n_f, np.int64),
        np.empty(n_f, np.bool_),
        np.empty(n_f, np.bool_),
        np.empty(n_f, np.uint8),
        np.empty(n_f, np.uint8),
        np.empty(n_f, np.int64),
        np.empty(total(Kind.CAN, N_BYTES), np.uint8),
    )
    return samples, events, frames


def _message_columns(info: np.ndarray, vin: np.ndarray) -> MessageColumns:
    return MessageColumns(
        status=info[:, STATUS].astype(np.uint8),
        error_offset=info[:, ERROR].astype(np.int32),
        kind=info[:, KIND].astype(np.uint8),
        vin=vin.view(f"S{VIN_LENGTH}").reshape(len(vin)),
        seq=info[:, SEQ].view(np.uint64),
        base_ts=info[:, BASE_TS].copy(),
        ts_min=info[:, TS_MIN].copy(),
        ts_max=info[:, TS_MAX].copy(),
        n_items=info[:, N_ITEMS].astype(np.int32),
    )


def _samples(cols: SampleCols) -> SampleColumns:
    msg, sid, ts, val = cols
    return SampleColumns(msg=msg, signal_id=sid, ts=ts, value=val)


def _events(cols: EventCols, joined: bytes) -> EventColumns:
    msg, ids, ts, val, spans = cols
    text = np.empty(len(msg), dtype=object)
    text[:] = [joined[o : o + n].decode("utf-8") for o, n in spans.tolist()]
    return EventColumns(msg=msg, event_id=ids.astype(np.uint16), ts=ts, value=val, text=text)


def _frames(cols: FrameCols) -> FrameColumns:
    msg, ts, bus, ids, ext, fd, dlc, size, start, data = cols
    return FrameColumns(msg, ts, bus, ids.astype(np.uint32), ext, fd, dlc, size, start, data)
