"""What crosses the pipeline's stage boundaries: numpy columns, one row per message or per stored row.

Every message of a batch keeps its input position, whatever decoder read it (signals and
events, or CAN frames with a DBC): rows point at it with `msg`. The three row tables are the
three tables a message can write (`TABLES`); a message's identity is checked per table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vehicle_ingest.codec import EventColumns, MessageColumns, SampleColumns
from vehicle_ingest.validate import Reason, TopicColumns

__all__ = ["TABLES", "CanRows", "Decoded", "RowCounts", "reason_labels"]

TABLES = ("signals", "events", "can_signals")


@dataclass(frozen=True, slots=True)
class CanRows:
    """Decoded CAN values no mapping sends to the catalog: rows of `can_signals`."""

    msg: np.ndarray  # int32, input position of the message
    name: np.ndarray  # int32, index into `names`
    ts: np.ndarray  # int64 ms
    value: np.ndarray  # float64, in the DBC's unit
    names: tuple[str, ...]  # DBC `Message.Signal`
    integer: np.ndarray  # int64: the exact value of an integer DBC signal (float64 rounds past 2**53)
    is_integer: np.ndarray  # bool: `integer` holds the value

    @classmethod
    def empty(cls) -> CanRows:
        none = np.zeros(0, np.int64)
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int32), none, np.zeros(0), (), none, np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.msg)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A batch after the decode stage: every message, and the rows each one would store."""

    messages: MessageColumns  # one row per input payload, in input order
    topics: TopicColumns
    signals: SampleColumns  # rows of `signals`: kind 1 samples and CAN values mapped to the catalog
    events: EventColumns  # rows of `events`
    can: CanRows  # rows of `can_signals`
    can_model_unknown: np.ndarray  # bool per message: a CAN message from a VIN no vehicle model matches
    received_ms: int

    def __len__(self) -> int:
        return len(self.messages)

    def row_msgs(self) -> dict[str, np.ndarray]:
        """The `msg` column of each table's rows."""
        return {"signals": self.signals.msg, "events": self.events.msg, "can_signals": self.can.msg}

    def row_ts(self) -> dict[str, np.ndarray]:
        return {"signals": self.signals.ts, "events": self.events.ts, "can_signals": self.can.ts}


@dataclass(frozen=True, slots=True)
class RowCounts:
    """Per message and table: rows and their earliest timestamp (what an identity is compared by)."""

    count: dict[str, np.ndarray]  # table -> int64 per message
    ts_min: dict[str, np.ndarray]  # table -> int64 per message (0 without rows)

    @classmethod
    def of(cls, decoded: Decoded) -> RowCounts:
        n = len(decoded)
        count, ts_min = {}, {}
        for table, msg in decoded.row_msgs().items():
            count[table] = np.bincount(msg, minlength=n).astype(np.int64)
            mins = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(mins, msg, decoded.row_ts()[table])
            ts_min[table] = np.where(count[table] > 0, mins, 0)
        return cls(count, ts_min)


_LABELS = np.array(["" if r == Reason.OK else r.label for r in Reason], dtype=object)
_LABEL_OF = np.zeros(max(Reason) + 1, dtype=np.int64)
_LABEL_OF[[int(r) for r in Reason]] = np.arange(len(Reason))


def reason_labels(reason: np.ndarray) -> np.ndarray:
    """Object array of labels ("" for OK) for an array of Reason codes."""
    labels: np.ndarray = _LABELS[_LABEL_OF[reason]]
    return labels
