"""The CAN part of the ingest stage: decode, validate and store CAN messages (kind 3).

A CAN message can write two tables: mapped values go to `signals` as catalog
samples, unmapped ones to `can_signals` under their DBC name. Each table
gets a batch's rows in one insert, and before inserting, the rows each
table already holds for every (vin, seq) are counted: a table that has the
message's rows is skipped, one that has none is written. A retry after a
partial insert (can_signals stored, signals failed) therefore writes only
what is missing; rows in a table that differ in number from what the
message decodes to mean a reused sequence number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vehicle_ingest.can.models import CanDecoder, CanValues
from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.codec import DecodedBatch, EventColumns, SampleColumns, decode_can
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.storage import CanSignalRows, SignalRows, Store
from vehicle_ingest.validate import Reason, SkewPolicy, TopicColumns, parse_topics, validate

__all__ = ["CanPlan", "CanStage", "is_can_payload"]

_CAN_HEADER = b"\x96\x01\x03"  # fixarray 6, version 1, kind 3: how encoders write a CAN payload's start


def is_can_payload(payloads: list[bytes]) -> np.ndarray:
    """Payloads for the CAN decoder, by their first three bytes; every other one goes to the main decoder."""
    return np.array([p[:3] == _CAN_HEADER for p in payloads], dtype=bool)


@dataclass(frozen=True, slots=True, eq=False)
class CanPlan:
    """What to insert: per message, whether its mapped / unmapped rows are still missing from the store."""

    need_mapped: np.ndarray  # bool per message
    need_unmapped: np.ndarray  # bool per message

    @property
    def fresh(self) -> np.ndarray:
        return self.need_mapped | self.need_unmapped


def _no_events() -> EventColumns:
    empty = np.zeros(0, np.int64)
    return EventColumns(np.zeros(0, np.int32), np.zeros(0, np.uint16), empty, empty, np.zeros(0, object))


class CanStage:
    def __init__(
        self, store: Store, decoder: CanDecoder, signals: SignalCatalog, events: EventCatalog, metrics: Metrics
    ) -> None:
        self._store = store
        self._decoder = decoder
        self._signals = signals
        self._events = events
        self._metrics = metrics

    def prepare(
        self, topics: list[str], payloads: list[bytes], now_ms: int, max_payload_bytes: int, skew: SkewPolicy
    ) -> tuple[DecodedBatch, CanValues, TopicColumns, np.ndarray]:
        """Decode and validate: (batch with the mapped samples, all values, topics, reason per message)."""
        can = decode_can(payloads, max_payload_bytes)
        values = self._decoder.decode(can)
        samples = SampleColumns(values.msg, values.signal_id, values.ts, values.value)
        batch = DecodedBatch(can.messages, samples, _no_events())
        topic_cols = parse_topics(topics)
        reason = validate(topic_cols, batch, self._signals, self._events, now_ms, skew)
        reason[(reason == Reason.OK) & (values.model < 0)] = Reason.CAN_MODEL_UNKNOWN
        self._metrics.can_frames.inc(values.frames)
        self._metrics.can_frames_unknown.inc(values.unknown_frames)
        return batch, values, topic_cols, reason

    def plan(self, batch: DecodedBatch, values: CanValues, ids: Any, reason: np.ndarray) -> CanPlan:
        """Look the first copies up in every table; mark reused sequence numbers in `reason`."""
        n = len(batch.messages)
        idx = np.flatnonzero((reason == Reason.OK) & ids.first)
        want_mapped = np.bincount(values.msg, minlength=n)[idx]
        want_unmapped = np.bincount(values.u_msg, minlength=n)[idx]
        vin_index, seq = ids.vin_index[idx], batch.messages.seq[idx]
        have = {
            t: self._store.rows_per_message(t, ids.vins, vin_index, seq) for t in ("signals", "can_signals", "events")
        }
        conflict = (have["events"] > 0) | ((have["signals"] > 0) & (have["signals"] != want_mapped))
        conflict |= (have["can_signals"] > 0) & (have["can_signals"] != want_unmapped)
        reason[idx[conflict]] = Reason.SEQ_REUSED
        need_mapped, need_unmapped = np.zeros(n, bool), np.zeros(n, bool)
        need_mapped[idx[~conflict & (have["signals"] == 0) & (want_mapped > 0)]] = True
        need_unmapped[idx[~conflict & (have["can_signals"] == 0) & (want_unmapped > 0)]] = True
        # A message that decodes to nothing (only unknown ids) stores nothing: it counts as stored.
        nothing = np.zeros(n, bool)
        nothing[idx[~conflict & (want_mapped == 0) & (want_unmapped == 0)]] = True
        return CanPlan(need_mapped | nothing, need_unmapped)

    def insert(self, batch: DecodedBatch, values: CanValues, ids: Any, plan: CanPlan, now_ms: int) -> tuple[int, int]:
        """Unmapped rows first, then mapped ones; each table in one insert. Returns (samples, unmapped values)."""
        seq = batch.messages.seq
        keep_u = plan.need_unmapped[values.u_msg]
        u_msg = values.u_msg[keep_u]
        self._store.insert_can_signals(
            CanSignalRows(
                ids.vins,
                ids.vin_index[u_msg],
                seq[u_msg],
                values.names,
                values.u_name[keep_u],
                values.u_ts[keep_u],
                values.u_value[keep_u],
                now_ms,
            )
        )
        keep = plan.need_mapped[values.msg]
        msg = values.msg[keep]
        self._store.insert_signals(
            SignalRows(
                ids.vins,
                ids.vin_index[msg],
                seq[msg],
                values.signal_id[keep],
                values.ts[keep],
                values.value[keep],
                now_ms,
            )
        )
        self._metrics.can_values_unmapped.inc(len(u_msg))
        return len(msg), len(u_msg)
