"""Payload codec, wire format v1 (schemas/WIRE_FORMAT.md).

`encode_signals` / `encode_events` build payloads; `decode_numba` (batch) and
`decode_reference` (plain Python, the executable spec) read them back, bit for
bit the same. CAN frame payloads (kind 3) have their own trio: `encode_can`,
`decode_can_numba`, `decode_can_reference`. `decode` and `decode_can` are the
twins the library runs, picked in `vehicle_ingest._twins`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vehicle_ingest.codec._can_encode import encode_can
from vehicle_ingest.codec._decode_numba import decode_can_numba, decode_numba
from vehicle_ingest.codec._decode_reference import decode_can_reference, decode_reference
from vehicle_ingest.codec._encode import SignalBlock, encode_events, encode_signals, quantize
from vehicle_ingest.codec._types import (
    FORMAT_VERSION,
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
from vehicle_ingest.codec._wire import BinMode

if TYPE_CHECKING:
    from vehicle_ingest._twins import decode, decode_can

__all__ = [
    "FORMAT_VERSION",
    "MAX_PAYLOAD_BYTES",
    "VIN_LENGTH",
    "BinMode",
    "CanBatch",
    "DecodedBatch",
    "EventColumns",
    "FrameColumns",
    "Kind",
    "MessageColumns",
    "SampleColumns",
    "SignalBlock",
    "Status",
    "decode",
    "decode_can",
    "decode_can_numba",
    "decode_can_reference",
    "decode_numba",
    "decode_reference",
    "encode_can",
    "encode_events",
    "encode_signals",
    "quantize",
]


def __getattr__(name: str) -> Any:
    # The twins the library runs are looked up on first use: vehicle_ingest._twins imports the
    # numba twins of this package and of vehicle_ingest.can, so importing it while this package
    # initialises would be circular.
    if name not in ("decode", "decode_can"):
        raise AttributeError(f"module 'vehicle_ingest.codec' has no attribute {name!r}")
    import vehicle_ingest._twins as twins

    value = getattr(twins, name)
    globals()[name] = value
    return value
