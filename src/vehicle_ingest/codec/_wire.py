"""Names of wire format v1 that both decoder twins use: field counts, accepted kinds, bin modes.

Names only: each twin reads the bytes with its own code (schemas/WIRE_FORMAT.md).
"""

from __future__ import annotations

from enum import IntEnum

from vehicle_ingest.codec._types import Kind

__all__ = [
    "BLOCK_FIELDS",
    "CAN_BODY_FIELDS",
    "CAN_KINDS",
    "EVENTS_FIELDS",
    "HEADER_FIELDS",
    "MAX_ERROR_OFFSET",
    "SAMPLE_KINDS",
    "BinMode",
    "kind_set",
]

HEADER_FIELDS = 6  # [version, kind, vin, seq, base_ts, body]
BLOCK_FIELDS = 5  # a signals block: [signal_id, scale_exp, count, ts, values]
EVENTS_FIELDS = 5  # the events body: [count, event_ids, ts, values, texts]
CAN_BODY_FIELDS = 6  # the CAN body: [count, ts, bus, ids, dlc, data]
MAX_ERROR_OFFSET = 2**31 - 1  # error offsets are int32


class BinMode(IntEnum):
    """The ways a bin's items are read; every bin of the format is one of these."""

    DELTA_OF_DELTA = 0  # zigzag varints: t0 - base_ts, the first delta, then deltas of deltas (signal ts)
    DELTA = 1  # zigzag varints added to a running sum (event and CAN ts from base_ts, signal raws from 0)
    ZIGZAG = 2  # one zigzag varint per item (event values)
    UNSIGNED = 3  # one unsigned varint per item (event ids)
    CAN_ID = 4  # one unsigned varint per frame: arbitration id << 1 | extended
    BYTES = 5  # no varints: exactly one byte per item (CAN bus and DLC), or the frames' data bytes


def kind_set(*kinds: Kind) -> int:
    """The kinds a decoder accepts, as a bit set (bit k = kind k); others are UNKNOWN_KIND."""
    return sum(1 << int(k) for k in kinds)


SAMPLE_KINDS = kind_set(Kind.SIGNALS, Kind.EVENTS)  # what `decode` accepts
CAN_KINDS = kind_set(Kind.CAN)  # what `decode_can` accepts
