"""vehicle-ingest: connected-car signals and cockpit events, decoded in batches and stored exactly once.

The public API, imported on first use (the CLI must not pay numba's and chDB's start-up for `--help`):

    from vehicle_ingest import encode_signals, SignalBlock, decode, Store, load_signal_catalog

The service lives in `vehicle_ingest.gateway`, the simulated fleets in `vehicle_ingest.simulators`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_API = {
    "SignalBlock": "vehicle_ingest.codec",
    "encode_signals": "vehicle_ingest.codec",
    "encode_events": "vehicle_ingest.codec",
    "encode_can": "vehicle_ingest.codec",
    "decode": "vehicle_ingest.codec",
    "decode_reference": "vehicle_ingest.codec",
    "decode_can": "vehicle_ingest.codec",
    "decode_can_reference": "vehicle_ingest.codec",
    "DecodedBatch": "vehicle_ingest.codec",
    "Status": "vehicle_ingest.codec",
    "SignalCatalog": "vehicle_ingest.catalog",
    "EventCatalog": "vehicle_ingest.catalog",
    "load_signal_catalog": "vehicle_ingest.catalog",
    "load_event_catalog": "vehicle_ingest.catalog",
    "Store": "vehicle_ingest.storage",
    "ReadSession": "vehicle_ingest.reads",
    "QueryLimits": "vehicle_ingest.reads",
    "Pipeline": "vehicle_ingest.pipeline",
    "PipelinePolicy": "vehicle_ingest.pipeline",
    "TagCycle": "vehicle_ingest.tags",
    "TagEngine": "vehicle_ingest.tags",
    "load_tag_definitions": "vehicle_ingest.tags",
    "Receipt": "vehicle_ingest.receipts",
    "decode_receipt": "vehicle_ingest.receipts",
    "encode_receipt": "vehicle_ingest.receipts",
    "VehicleIngestError": "vehicle_ingest.errors",
}

__all__ = ["__version__", *sorted(_API)]

if TYPE_CHECKING:
    from vehicle_ingest.catalog import EventCatalog, SignalCatalog, load_event_catalog, load_signal_catalog
    from vehicle_ingest.codec import (
        DecodedBatch,
        SignalBlock,
        Status,
        decode,
        decode_can,
        decode_can_reference,
        decode_reference,
        encode_can,
        encode_events,
        encode_signals,
    )
    from vehicle_ingest.errors import VehicleIngestError
    from vehicle_ingest.pipeline import Pipeline, PipelinePolicy
    from vehicle_ingest.reads import QueryLimits, ReadSession
    from vehicle_ingest.receipts import Receipt, decode_receipt, encode_receipt
    from vehicle_ingest.storage import Store
    from vehicle_ingest.tags import TagCycle, TagEngine, load_tag_definitions


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'vehicle_ingest' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
