"""The one ingest pipeline: raw MQTT messages of every kind in, stored rows and verdicts out.

    decode (_decode) → validate (vehicle_ingest.validate) → identify (_identify) → commit (_commit)

Stages hand each other typed batches of numpy columns (_batch); each returns what it decided
instead of changing what it was given. `Pipeline.prepare` reads, `Pipeline.commit` writes; the
caller acks the broker only after `commit` returned.
"""

from vehicle_ingest.pipeline._batch import CanRows, Decoded, RowCounts
from vehicle_ingest.pipeline._identify import IdentityLookup, PendingIdentities, Plan
from vehicle_ingest.pipeline._outcome import Outcome
from vehicle_ingest.pipeline._pipeline import Pipeline, PipelinePolicy, Prepared

__all__ = [
    "CanRows",
    "Decoded",
    "IdentityLookup",
    "Outcome",
    "PendingIdentities",
    "Pipeline",
    "PipelinePolicy",
    "Plan",
    "Prepared",
    "RowCounts",
]
