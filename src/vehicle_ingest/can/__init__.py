"""Raw CAN frames decoded with DBC files, in batch.

    manifest = load_manifest("car.dbc")            # cantools parses, numpy tables out
    values = decode_frames(manifest, keys, data, length)

`decode_frames` (numba) and `decode_frames_reference` (plain Python) return the
same `SignalValues`, bit for bit.
"""

from vehicle_ingest.can._numba_signals import decode_signals as decode_frames
from vehicle_ingest.can._reference_signals import decode_signals_reference as decode_frames_reference
from vehicle_ingest.can._types import SignalValues
from vehicle_ingest.can.manifest import EXTENDED_FLAG, Manifest, frame_key, load_manifest

__all__ = [
    "EXTENDED_FLAG",
    "Manifest",
    "SignalValues",
    "decode_frames",
    "decode_frames_reference",
    "frame_key",
    "load_manifest",
]
