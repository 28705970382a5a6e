"""Real-time moments: tag-like conditions decided at ingest and sent to the CDP within seconds.

Definitions are the `[[moment]]` entries of schemas/tags.toml (_definitions). The engine
(_engine) evaluates each committed batch with numpy and a numba state machine in batch order over
the watched rows (_rows, _crossings; a sorted reference path for rows out of time order), and
rebuilds the state of a vehicle it has not seen since it started from the store (_history).
Moments travel through the tag changes' outbox with action "fired" (schemas/CDP.md).
"""

from vehicle_ingest.moments._crossings import condition_mask, crossings_numba, crossings_reference
from vehicle_ingest.moments._definitions import MomentDefinition, load_moment_definitions
from vehicle_ingest.moments._engine import Evaluation, MomentEngine
from vehicle_ingest.moments._history import LOOKBACK_MS

__all__ = [
    "LOOKBACK_MS",
    "Evaluation",
    "MomentDefinition",
    "MomentEngine",
    "condition_mask",
    "crossings_numba",
    "crossings_reference",
    "load_moment_definitions",
]
