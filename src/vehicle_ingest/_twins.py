"""Which twin of each batch decoder the library runs: picked here and nowhere else.

Every batch decoder comes as a pair with one signature and the same output,
bit for bit: a numba twin (fast) and a plain-Python reference twin (the
executable spec, which the parity tests, golden tests and fuzzers hold the
numba twin to).

| what it decodes | numba twin | reference twin | the library runs |
| --- | --- | --- | --- |
| signals and events payloads (kinds 1, 2) | `decode_numba` | `decode_reference` | `codec.decode` |
| CAN payloads (kind 3) | `decode_can_numba` | `decode_can_reference` | `codec.decode_can` |
| CAN frames against a DBC manifest | `decode_frames_numba` | `decode_frames_reference` | `can.decode_frames` |

To run the library on a reference twin (to debug a suspected kernel bug),
change the binding here.
"""

from __future__ import annotations

from vehicle_ingest.can._frames_numba import decode_frames_numba
from vehicle_ingest.codec._decode_numba import decode_can_numba, decode_numba

__all__ = ["decode", "decode_can", "decode_frames"]

decode = decode_numba
decode_can = decode_can_numba
decode_frames = decode_frames_numba
