"""Columns the CAN signal decoders return."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SignalValues"]


@dataclass(frozen=True, slots=True, eq=False)
class SignalValues:
    """One row per decoded signal value, grouped by frame in input order, signals in manifest order.

    `raw` is the integer the frame carries (sign-extended when the signal is signed; the
    IEEE bit pattern for a float signal; the uint64 bits for an unsigned 64-bit signal).
    `value` is the physical value, raw * factor + offset, in the DBC's unit.
    `integer` is the exact physical value of an integer signal (`Manifest.sig_integer`: not a
    float, integral factor and offset, every result within int64), 0 for the other signals;
    such a signal's `value` is `integer` rounded once to float64, as cantools' `float(int)`.
    """

    frame: np.ndarray  # int32, index of the frame in the input
    signal: np.ndarray  # int32, signal row of the manifest
    raw: np.ndarray  # int64
    value: np.ndarray  # float64
    known: np.ndarray  # bool per input frame: its id is in the manifest
    integer: np.ndarray  # int64, exact value of an integer signal, else 0

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def unknown_frames(self) -> int:
        return int((~self.known).sum())
