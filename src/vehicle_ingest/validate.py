"""Validation stage: decoded columns in, one rejection reason per message out.

The decoder answers "is this a well-formed payload?"; this stage answers "do
we accept it?": topic shape, VIN format and identity, catalog membership,
value ranges and clock skew. Everything is vectorized over the batch; only
topic parsing touches each message (never each sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import cast

import numpy as np
import numpy.typing as npt

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.codec import DecodedBatch, Kind, Status

__all__ = ["TOPIC_PREFIX", "Reason", "SkewPolicy", "TopicColumns", "parse_topics", "valid_vins", "validate"]

TOPIC_PREFIX = "vi/v1/"
_STREAMS = {"signals": Kind.SIGNALS, "events": Kind.EVENTS, "can": Kind.CAN}
_MAX_TOPIC_BYTES = 128
_VIN_ALPHABET = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # ISO 3779: no I, O, Q
_VIN_OK = np.zeros(256, dtype=bool)
_VIN_OK[np.frombuffer(_VIN_ALPHABET, dtype=np.uint8)] = True


class Reason(IntEnum):
    """Why a message was rejected. 1-9 are the decoder's `Status` values."""

    OK = 0
    MALFORMED = Status.MALFORMED
    UNSUPPORTED_VERSION = Status.UNSUPPORTED_VERSION
    UNKNOWN_KIND = Status.UNKNOWN_KIND
    OVERSIZE = Status.OVERSIZE
    EMPTY = Status.EMPTY
    BAD_TOPIC = 10
    INVALID_VIN = 11
    VIN_MISMATCH = 12
    KIND_MISMATCH = 13
    UNKNOWN_SIGNAL = 14
    UNKNOWN_EVENT = 15
    VALUE_OUT_OF_RANGE = 16
    TIMESTAMP_SKEW = 17
    SEQ_REUSED = 18
    CAN_MODEL_UNKNOWN = 19  # a CAN message from a VIN no configured vehicle model matches
    STORE_REJECTED = 20  # valid, but the store refuses its rows (a constraint, say): kept whole in dead letters

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class SkewPolicy:
    """Accepted timestamp window around the gateway's clock.

    The past bound is generous because head units buffer while out of
    coverage (parking garages, tunnels, trips abroad) and upload later.
    """

    max_past_ms: int = 90 * 86_400_000
    max_future_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class TopicColumns:
    vin: np.ndarray  # 'S17', b"" when the topic is not ours
    kind: np.ndarray  # uint8, 0 when the topic is not ours


def parse_topics(topics: list[str]) -> TopicColumns:
    """`vi/v1/<VIN>/<stream>` → (VIN, kind) per message."""
    vin = np.zeros(len(topics), dtype="S17")
    kind = np.zeros(len(topics), dtype=np.uint8)
    for i, topic in enumerate(topics):
        if len(topic) > _MAX_TOPIC_BYTES or not topic.startswith(TOPIC_PREFIX):
            continue
        parts = topic[len(TOPIC_PREFIX) :].split("/")
        if len(parts) == 2 and len(parts[0]) == 17 and parts[0].isascii() and parts[1] in _STREAMS:
            vin[i] = parts[0].encode("ascii")
            kind[i] = _STREAMS[parts[1]]
    return TopicColumns(vin, kind)


def valid_vins(vin: np.ndarray) -> np.ndarray:
    """ISO 3779 shape check (17 characters of the VIN alphabet) on an 'S17' column."""
    if len(vin) == 0:
        return np.zeros(0, dtype=bool)
    codes = np.frombuffer(np.ascontiguousarray(vin, dtype="S17").tobytes(), dtype=np.uint8).reshape(-1, 17)
    return cast("npt.NDArray[np.bool_]", _VIN_OK[codes].all(axis=1))  # 2-D reduced along an axis: an array


def _any_per_message(n: int, msg: np.ndarray, flags: np.ndarray) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[msg[flags]] = True
    return out


def _reject(reason: np.ndarray, where: np.ndarray, code: Reason) -> None:
    """First reason wins: only messages still OK take the new one."""
    reason[(reason == Reason.OK) & where] = code


def validate(
    topics: TopicColumns,
    batch: DecodedBatch,
    signals: SignalCatalog,
    events: EventCatalog,
    now_ms: int,
    skew: SkewPolicy,
) -> np.ndarray:
    """Return a uint8 `Reason` per message (0 = accepted)."""
    m, s, e = batch.messages, batch.samples, batch.events
    n = len(m)
    reason = m.status.astype(np.uint8, copy=True)
    _reject(reason, topics.kind == 0, Reason.BAD_TOPIC)
    _reject(reason, topics.kind != m.kind, Reason.KIND_MISMATCH)
    _reject(reason, ~valid_vins(m.vin), Reason.INVALID_VIN)
    _reject(reason, topics.vin != m.vin, Reason.VIN_MISMATCH)
    _reject(reason, _any_per_message(n, s.msg, ~signals.known[s.signal_id]), Reason.UNKNOWN_SIGNAL)
    _reject(reason, _any_per_message(n, e.msg, ~events.known[e.event_id]), Reason.UNKNOWN_EVENT)
    low, high = signals.min_value[s.signal_id], signals.max_value[s.signal_id]
    _reject(reason, _any_per_message(n, s.msg, (s.value < low) | (s.value > high)), Reason.VALUE_OUT_OF_RANGE)
    outside = (m.ts_min < now_ms - skew.max_past_ms) | (m.ts_max > now_ms + skew.max_future_ms)
    _reject(reason, outside, Reason.TIMESTAMP_SKEW)
    return reason
