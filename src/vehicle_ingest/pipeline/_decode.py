"""Decode stage: raw payloads in, one `Decoded` batch out, whichever decoder read each message.

Payloads starting `96 01 03` (CAN frames, schemas/WIRE_FORMAT.md section 11) go to the CAN
container decoder and the vehicle model's DBC set; every other payload to the signals/events
decoder. Both results are merged back into input order, so every later stage sees one batch.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from vehicle_ingest.can.models import CanDecoder, CanValues
from vehicle_ingest.codec import DecodedBatch, EventColumns, MessageColumns, SampleColumns, decode, decode_can
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline._batch import CanRows, Decoded
from vehicle_ingest.validate import parse_topics

__all__ = ["decode_batch", "is_can_payload"]

_CAN_HEADER = b"\x96\x01\x03"  # fixarray 6, version 1, kind 3: how encoders write a CAN payload's start


def is_can_payload(payloads: list[bytes]) -> np.ndarray:
    """Payloads for the CAN decoder, by their first three bytes; every other one goes to the main decoder."""
    return np.fromiter((p[:3] == _CAN_HEADER for p in payloads), dtype=bool, count=len(payloads))


def decode_batch(
    topics: list[str],
    payloads: list[bytes],
    received_ms: int,
    max_payload_bytes: int,
    can_decoder: CanDecoder,
    metrics: Metrics,
) -> Decoded:
    topic_cols = parse_topics(topics)
    can = is_can_payload(payloads)
    if not can.any():  # the common case: one decoder, nothing to merge
        batch = decode(payloads, max_payload_bytes)
        no_model = np.zeros(len(payloads), dtype=bool)
        return Decoded(batch.messages, topic_cols, batch.samples, batch.events, CanRows.empty(), no_model, received_ms)
    main, frames = np.flatnonzero(~can), np.flatnonzero(can)
    batch = decode([payloads[i] for i in main], max_payload_bytes)
    can_batch = decode_can([payloads[i] for i in frames], max_payload_bytes)
    values = can_decoder.decode(can_batch)
    metrics.can_frames.inc(values.frames)
    metrics.can_frames_unknown.inc(values.unknown_frames)
    metrics.can_values_unmapped.inc(len(values.u_msg))
    return _merged(batch, can_batch.messages, values, main, frames, topic_cols, received_ms)


def _merged(
    batch: DecodedBatch,
    can_messages: MessageColumns,
    values: CanValues,
    main: np.ndarray,
    frames: np.ndarray,
    topics: object,
    received_ms: int,
) -> Decoded:
    n = len(main) + len(frames)
    messages = MessageColumns(
        **{f.name: _scatter(n, main, frames, getattr(batch.messages, f.name), getattr(can_messages, f.name))
           for f in fields(MessageColumns)}
    )  # fmt: skip
    s, e = batch.samples, batch.events
    signals = SampleColumns(
        np.concatenate((main[s.msg], frames[values.msg])).astype(np.int32),
        np.concatenate((s.signal_id, values.signal_id)),
        np.concatenate((s.ts, values.ts)),
        np.concatenate((s.value, values.value)),
    )
    events = EventColumns(main[e.msg].astype(np.int32), e.event_id, e.ts, e.value, e.text)
    can_msg = frames[values.u_msg].astype(np.int32)
    can = CanRows(
        can_msg, values.u_name, values.u_ts, values.u_value, tuple(values.names), values.u_integer, values.u_is_integer
    )
    no_model = np.zeros(n, dtype=bool)
    no_model[frames] = values.model < 0
    return Decoded(messages, topics, signals, events, can, no_model, received_ms)  # type: ignore[arg-type]


def _scatter(n: int, main: np.ndarray, frames: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((n, *a.shape[1:]), dtype=a.dtype)
    out[main], out[frames] = a, b
    return out
