"""Raw CAN frames decoded with DBC files, in batch.

    manifest = load_manifest("car.dbc")            # cantools parses, numpy tables out
    values = decode_frames(manifest, keys, data, length)

`decode_frames_numba` and `decode_frames_reference` (plain Python) return the
same `SignalValues`, bit for bit; `decode_frames` is the twin the library runs,
picked in `vehicle_ingest._twins`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vehicle_ingest.can._frames_numba import decode_frames_numba
from vehicle_ingest.can._frames_reference import decode_frames_reference
from vehicle_ingest.can._types import SignalValues
from vehicle_ingest.can.manifest import EXTENDED_FLAG, Manifest, frame_key, load_manifest

if TYPE_CHECKING:
    from vehicle_ingest._twins import decode_frames

__all__ = [
    "EXTENDED_FLAG",
    "Manifest",
    "SignalValues",
    "decode_frames",
    "decode_frames_numba",
    "decode_frames_reference",
    "frame_key",
    "load_manifest",
]


def __getattr__(name: str) -> Any:
    # Looked up on first use: vehicle_ingest._twins imports this package's numba twin, so
    # importing it here, while this package initialises, would be circular.
    if name != "decode_frames":
        raise AttributeError(f"module 'vehicle_ingest.can' has no attribute {name!r}")
    from vehicle_ingest._twins import decode_frames

    globals()[name] = decode_frames
    return decode_frames
