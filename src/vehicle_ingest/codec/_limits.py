"""Limits of wire format v1 shared by the encoder and both decoders (see schemas/WIRE_FORMAT.md)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "CAN_CLASSIC_BYTES",
    "CAN_EXT_ID_LIMIT",
    "CAN_FD_BYTES",
    "CAN_FD_FLAG",
    "CAN_STD_ID_LIMIT",
    "MAX_COUNT",
    "MAX_TEXT_BYTES",
    "MAX_VARINT_BYTES",
    "POW10",
    "RAW_LIMIT",
    "SCALE_EXP_MAX",
    "TS_LIMIT",
]

TS_LIMIT = 1 << 48  # timestamps are ms since epoch in [0, 2**48)
RAW_LIMIT = 1 << 53  # |raw| < 2**53, so every raw value is exact as a float64
SCALE_EXP_MAX = 12  # scale_exp is in [-12, 12]
MAX_COUNT = 0xFFFF
MAX_TEXT_BYTES = 255
MAX_VARINT_BYTES = 8

# One table for the encoder and both decoders: every power up to 10**22 is exact
# in float64, so raw * POW10[e] and raw / POW10[-e] are bit-identical everywhere.
POW10 = np.array([10.0**k for k in range(SCALE_EXP_MAX + 1)], dtype=np.float64)
POW10.flags.writeable = False

# CAN frames (kind 3). A DLC code 0..15 gives the data length: classic CAN caps it at 8,
# CAN FD maps 9..15 to 12, 16, 20, 24, 32, 48, 64 bytes.
CAN_FD_BYTES = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64], dtype=np.int64)
CAN_FD_BYTES.flags.writeable = False
CAN_CLASSIC_BYTES = np.minimum(np.arange(16, dtype=np.int64), 8)
CAN_CLASSIC_BYTES.flags.writeable = False
CAN_FD_FLAG = 0x10  # bit 4 of a frame's DLC byte: CAN FD frame; bits 5-7 must be 0
CAN_STD_ID_LIMIT = 1 << 11
CAN_EXT_ID_LIMIT = 1 << 29
