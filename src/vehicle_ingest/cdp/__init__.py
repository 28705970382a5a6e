"""CDP delivery: tag changes, their persisted outbox, sinks chosen by URL, the deliverer and the quarantine.

    tags stage ──enqueue──▶ Outbox (ClickHouse) ──pending──▶ Deliverer ──send──▶ Sink (Segment / Sensors /
                               ▲        ▲                     │   │                   webhook / file)
                               │        └──mark_delivered─────┘   │  (only after the sink accepted)
                               │                                  │
                               └─release── Quarantine ◀──add──────┘  (a change the sink refused on its own)

Delivery is at-least-once with deterministic message ids; the CDP deduplicates
by message id. The contract for integrators is schemas/CDP.md.
"""

from vehicle_ingest.cdp._change import TagChange, change_message_id, moment_message_id, redact
from vehicle_ingest.cdp._deliverer import CdpMetrics, Deliverer, RunStore
from vehicle_ingest.cdp._factory import sink_from_url
from vehicle_ingest.cdp._jsonl import JsonlSink
from vehicle_ingest.cdp._outbox import Outbox
from vehicle_ingest.cdp._quarantine import MAX_ANSWER_CHARS, Quarantine, QuarantinedChange
from vehicle_ingest.cdp._segment import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, SegmentSink
from vehicle_ingest.cdp._sensors import SensorsSink
from vehicle_ingest.cdp._sink import Sink
from vehicle_ingest.cdp._webhook import WebhookSink, idempotency_key

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "CdpMetrics",
    "Deliverer",
    "JsonlSink",
    "Outbox",
    "Quarantine",
    "QuarantinedChange",
    "RunStore",
    "SegmentSink",
    "SensorsSink",
    "Sink",
    "TagChange",
    "WebhookSink",
    "change_message_id",
    "idempotency_key",
    "moment_message_id",
    "redact",
    "sink_from_url",
]
