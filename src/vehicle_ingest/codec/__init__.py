"""Payload codec, wire format v1 (schemas/WIRE_FORMAT.md).

`encode_signals` / `encode_events` build payloads; `decode` (numba, batch) and
`decode_reference` (plain Python, the executable spec) read them back, bit for
bit the same.
"""

from vehicle_ingest.codec._encode import SignalBlock, encode_events, encode_signals, quantize
from vehicle_ingest.codec._numba_decode import decode
from vehicle_ingest.codec._reference_decode import decode_reference
from vehicle_ingest.codec._types import (
    FORMAT_VERSION,
    MAX_PAYLOAD_BYTES,
    VIN_LENGTH,
    DecodedBatch,
    EventColumns,
    Kind,
    MessageColumns,
    SampleColumns,
    Status,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_PAYLOAD_BYTES",
    "VIN_LENGTH",
    "DecodedBatch",
    "EventColumns",
    "Kind",
    "MessageColumns",
    "SampleColumns",
    "SignalBlock",
    "Status",
    "decode",
    "decode_reference",
    "encode_events",
    "encode_signals",
    "quantize",
]
