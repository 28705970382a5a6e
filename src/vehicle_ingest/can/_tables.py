"""The numba kernel's view of a manifest: flat tables derived from its signal and message columns.

Word path. A signal whose bits lie within the 8 bytes from its first byte
(every signal of up to 57 bits, and longer ones that start on a byte
boundary) is read from one unaligned 64-bit load at that byte: taken
little-endian, or byte-swapped for big-endian (Motorola) signals, then a shift
and a mask. A message whose signals are all like that and that has no
multiplexing takes this path for every frame long enough for all of its
signals: one branch-free sequence per signal, for classic and CAN FD frames
alike. The load may read past the frame's end (never past the data buffer:
the kernel checks `msg_read_end`): those bits are masked off.

Each signal's fields for the word path are one 64-byte record (one cache line):

    0 order   all bits set for big endian: picks the byte-swapped word without a branch
    1 mask    (1 << length) - 1
    2 packed  length | signed << 8 | float << 9 | integer << 10 | shift << 16 | sext << 24 | word byte << 32
    3 factor  float64 bits      4 offset  float64 bits
    5 factor  int64 (integer signals, else 0)      6 offset  int64 (integer signals, else 0)
    7 bytes   pos | frame bytes needed << 16 | (multiplexer row + 1) << 32, for the byte path

One record carries all a signal's fields so that the kernel's loops index one
array: every array a numba loop takes out of a tuple, or passes to a function
call, costs an atomic reference count update.
"""

from __future__ import annotations

from itertools import pairwise
from typing import NamedTuple

import numpy as np

__all__ = ["KernelTables", "kernel_tables"]

_ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)


class KernelTables(NamedTuple):
    """The arrays the numba kernel reads (a NamedTuple: numba takes it as one argument)."""

    msg_key: np.ndarray  # uint32, sorted frame keys
    msg_first: np.ndarray  # int32, n_messages + 1 offsets into the signal rows
    std_lookup: np.ndarray  # int32[2048], message row of each 11-bit id, -1 when none
    msg_need: np.ndarray  # int64, bytes a frame needs to carry every signal of the message
    msg_word: np.ndarray  # bool, the word path decodes the message (see the module docstring)
    msg_read_end: np.ndarray  # int64, bytes from a frame's start that the word path may load
    record: np.ndarray  # uint64 (n_signals, 8), see the module docstring
    sig_mux_first: np.ndarray  # int64
    mux_values: np.ndarray  # int64


def _word_layout(pos: np.ndarray, length: np.ndarray, big: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(word byte, shift within the word, fits one word) per signal."""
    word = pos >> 3
    in_byte = pos & 7
    fits = in_byte + length <= 64
    shift = np.where(big, 64 - in_byte - length, in_byte)
    return word, np.where(fits, shift, 0), fits


def _records(cols: dict[str, np.ndarray], word: np.ndarray, shift: np.ndarray) -> np.ndarray:
    length = cols["len"]
    signed, is_float, integer = cols["signed"], cols["float"], cols["integer"]
    sext = np.where(signed & ~is_float, 64 - length, 0)
    packed = length | (signed.astype(np.int64) << 8) | (is_float.astype(np.int64) << 9)
    packed |= (integer.astype(np.int64) << 10) | (shift << 16) | (sext << 24) | (word << 32)
    record = np.zeros((len(length), 8), dtype=np.uint64)
    record[:, 0] = np.where(cols["big"], _ALL_BITS, np.uint64(0))
    record[:, 1] = np.where(length >= 64, _ALL_BITS, (np.uint64(1) << length.astype(np.uint64)) - np.uint64(1))
    record[:, 2] = packed.astype(np.uint64)
    record[:, 3] = cols["factor"].astype(np.float64).view(np.uint64)
    record[:, 4] = cols["offset"].astype(np.float64).view(np.uint64)
    record[:, 5] = cols["factor_int"].astype(np.int64).view(np.uint64)
    record[:, 6] = cols["offset_int"].astype(np.int64).view(np.uint64)
    record[:, 7] = (cols["pos"] | (cols["bytes"] << 16) | ((cols["parent"] + 1) << 32)).astype(np.uint64)
    return record


def kernel_tables(
    msg_key: np.ndarray,
    msg_first: np.ndarray,
    cols: dict[str, np.ndarray],
    mux_first: np.ndarray,
    mux_values: np.ndarray,
) -> KernelTables:
    """Tables of a manifest's columns; `cols` are its signal columns by name (int64 / bool / float64)."""
    pos, length, big = cols["pos"], cols["len"], cols["big"]
    word, shift, fits = _word_layout(pos, length, big)
    plain = (cols["parent"] < 0) & fits
    spans = list(pairwise(msg_first.tolist()))
    keys = msg_key.astype(np.int64)
    std_lookup = np.full(2048, -1, dtype=np.int32)
    std = keys < 2048
    std_lookup[keys[std]] = np.flatnonzero(std)
    return KernelTables(
        msg_key=msg_key,
        msg_first=msg_first,
        std_lookup=std_lookup,
        msg_need=np.array([cols["bytes"][a:b].max(initial=0) for a, b in spans], np.int64),
        msg_word=np.array([plain[a:b].all() for a, b in spans], bool),
        msg_read_end=np.array([(word[a:b] + 8).max(initial=0) for a, b in spans], np.int64),
        record=_records(cols, word, shift),
        sig_mux_first=mux_first.astype(np.int64),
        mux_values=mux_values.astype(np.int64),
    )
