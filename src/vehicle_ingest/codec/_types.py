"""Typed columns that cross the decode stage boundary.

Every array is a numpy column; nothing here holds one Python object per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "MAX_PAYLOAD_BYTES",
    "VIN_LENGTH",
    "CanBatch",
    "DecodedBatch",
    "EventColumns",
    "FrameColumns",
    "Kind",
    "MessageColumns",
    "SampleColumns",
    "Status",
]

FORMAT_VERSION = 1
VIN_LENGTH = 17
MAX_PAYLOAD_BYTES = 256 * 1024


class Kind(IntEnum):
    """Stream kind, field 1 of every payload header."""

    SIGNALS = 1
    EVENTS = 2
    CAN = 3


class Status(IntEnum):
    """Outcome per message. Non-zero values are rejection reasons."""

    OK = 0
    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    UNKNOWN_KIND = 3
    OVERSIZE = 4
    EMPTY = 5

    @property
    def reason(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class MessageColumns:
    """One row per input payload, in input order."""

    status: np.ndarray  # uint8, a Status value
    error_offset: np.ndarray  # int32, byte offset where parsing failed (-1 when OK; 0 for OVERSIZE)
    kind: np.ndarray  # uint8, a Kind value (0 when not parsed)
    vin: np.ndarray  # dtype 'S17'; b"" when the header was not parsed
    seq: np.ndarray  # uint64
    base_ts: np.ndarray  # int64, ms since Unix epoch
    ts_min: np.ndarray  # int64, earliest sample/event timestamp (0 when none)
    ts_max: np.ndarray  # int64, latest sample/event timestamp (0 when none)
    n_items: np.ndarray  # int32, samples (signals) or events carried

    def __len__(self) -> int:
        return len(self.status)


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """Samples of the messages whose status is OK, grouped by message in input order."""

    msg: np.ndarray  # int32, row index into MessageColumns
    signal_id: np.ndarray  # uint16
    ts: np.ndarray  # int64, ms since Unix epoch
    value: np.ndarray  # float64, raw * 10**scale_exp

    def __len__(self) -> int:
        return len(self.msg)


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Events of the messages whose status is OK, grouped by message in input order."""

    msg: np.ndarray  # int32
    event_id: np.ndarray  # uint16
    ts: np.ndarray  # int64
    value: np.ndarray  # int64
    text: np.ndarray  # object array of str (events are human-rate, a str each is fine)

    def __len__(self) -> int:
        return len(self.msg)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    messages: MessageColumns
    samples: SampleColumns
    events: EventColumns


@dataclass(frozen=True, slots=True)
class FrameColumns:
    """CAN frames (kind 3) of the messages whose status is OK, grouped by message in input order.

    Frame i's data is `data[data_start[i] : data_start[i] + length[i]]`.
    """

    msg: np.ndarray  # int32, row index into MessageColumns
    ts: np.ndarray  # int64, ms since Unix epoch
    bus: np.ndarray  # uint8, bus / channel number
    arb_id: np.ndarray  # uint32, 11-bit or 29-bit arbitration id
    extended: np.ndarray  # bool, 29-bit id
    fd: np.ndarray  # bool, CAN FD frame
    dlc: np.ndarray  # uint8, the DLC code 0..15 as sent
    length: np.ndarray  # uint8, data bytes (0..8 classic, up to 64 FD)
    data_start: np.ndarray  # int64, offset into `data`
    data: np.ndarray  # uint8, every frame's data back to back

    def __len__(self) -> int:
        return len(self.msg)


@dataclass(frozen=True, slots=True)
class CanBatch:
    messages: MessageColumns
    frames: FrameColumns
