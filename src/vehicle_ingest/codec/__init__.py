"""Payload codec, wire format v1 (schemas/WIRE_FORMAT.md).

`encode_signals` / `encode_events` build payloads; `decode` (numba, batch) and
`decode_reference` (plain Python, the executable spec) read them back, bit for
bit the same. CAN frame payloads (kind 3) have their own trio: `encode_can`,
`decode_can`, `decode_can_reference`.
"""

from vehicle_ingest.codec._can_encode import encode_can
from vehicle_ingest.codec._can_numba_decode import decode_can
from vehicle_ingest.codec._can_reference_decode import decode_can_reference
from vehicle_ingest.codec._encode import SignalBlock, encode_events, encode_signals, quantize
from vehicle_ingest.codec._numba_decode import decode
from vehicle_ingest.codec._reference_decode import decode_reference
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
    "SignalBlock",
    "Status",
    "decode",
    "decode_can",
    "decode_can_reference",
    "decode_reference",
    "encode_can",
    "encode_events",
    "encode_signals",
    "quantize",
]
