"""Encoder for wire format v1 (see schemas/WIRE_FORMAT.md).

The simulator encodes millions of samples per second, so the per-sample work
(range checks, delta coding, zigzag, LEB128) runs in small numba kernels, one
call per block. msgpack-python frames the header and the block arrays; the
sample data travels as `bin` blobs.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from vehicle_ingest.codec._limits import (
    MAX_COUNT,
    MAX_TEXT_BYTES,
    MAX_VARINT_BYTES,
    POW10,
    RAW_LIMIT,
    SCALE_EXP_MAX,
    TS_LIMIT,
)
from vehicle_ingest.codec._types import FORMAT_VERSION, MAX_PAYLOAD_BYTES, VIN_LENGTH, Kind
from vehicle_ingest.errors import EncodeError

__all__ = ["SignalBlock", "encode_events", "encode_signals", "quantize"]

# Kernel verdicts: which column held the first out-of-range entry.
_FINE, _BAD_TS, _BAD_RAW, _BAD_ID = 0, 1, 2, 3


@dataclass(frozen=True, slots=True, eq=False)
class SignalBlock:
    """Samples of one signal: `raw[i] * 10**scale_exp` measured at `ts_ms[i]`.

    eq=False: numpy arrays have no single truth value, so dataclass equality would raise.
    """

    signal_id: int
    scale_exp: int
    ts_ms: np.ndarray  # int64, ms since Unix epoch
    raw: np.ndarray  # int64, |raw| < 2**53


def quantize(values: np.ndarray, scale_exp: int) -> np.ndarray:
    """Raw integers for `values` at resolution 10**scale_exp, rounding half away from zero."""
    exp = _check_scale_exp(scale_exp)
    x = np.ascontiguousarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise EncodeError(f"quantize: values must be 1-D, got shape {x.shape}")
    out = np.empty(len(x), dtype=np.int64)
    bad = _quantize(x, exp, out)
    if bad >= 0:
        problem = f"values[{bad}]={float(x[bad])!r} is not finite, or |raw| >= 2**53 at scale_exp {exp}"
        raise EncodeError(f"quantize: {problem}")
    return out


def encode_signals(vin: str, seq: int, base_ts_ms: int, blocks: Sequence[SignalBlock]) -> bytes:
    """One signals payload (kind 1) carrying `blocks` in order."""
    header = _header(Kind.SIGNALS, vin, seq, base_ts_ms)
    if not blocks:
        raise EncodeError("encode_signals: no blocks (an empty message would be rejected as EMPTY)")
    body = [_block(i, b, header[4]) for i, b in enumerate(blocks)]
    return _pack([*header, body])


def encode_events(
    vin: str,
    seq: int,
    base_ts_ms: int,
    event_id: ArrayLike,
    ts_ms: ArrayLike,
    value: ArrayLike,
    text: Sequence[str],
) -> bytes:
    """One events payload (kind 2): event i is (event_id[i], ts_ms[i], value[i], text[i])."""
    header = _header(Kind.EVENTS, vin, seq, base_ts_ms)
    ids, ts, val = _int_column("event_id", event_id), _int_column("ts_ms", ts_ms), _int_column("value", value)
    count = _check_count("events", len(ids), (len(ts), len(val), len(text)))
    texts = [_text(i, t) for i, t in enumerate(text)]
    bins = np.empty((3, count * MAX_VARINT_BYTES), dtype=np.uint8)
    what, index, n_ids, n_ts, n_val = _event_bins(ids, ts, val, header[4], bins)
    _raise_if_bad("events", what, index, ids, ts, val)
    body = [count, bins[0, :n_ids].tobytes(), bins[1, :n_ts].tobytes(), bins[2, :n_val].tobytes(), texts]
    return _pack([*header, body])


def _header(kind: Kind, vin: str, seq: int, base_ts_ms: int) -> list[Any]:
    try:
        vin_ok = isinstance(vin, str) and len(vin.encode("utf-8")) == VIN_LENGTH
    except UnicodeEncodeError:
        vin_ok = False
    if not vin_ok:
        raise EncodeError(f"vin must be a str of exactly {VIN_LENGTH} UTF-8 bytes, got {vin!r}")
    seq_i = _int_scalar("seq", seq, 0, 1 << 64)
    base = _int_scalar("base_ts_ms", base_ts_ms, 0, TS_LIMIT)
    return [FORMAT_VERSION, int(kind), vin, seq_i, base]


def _block(index: int, block: SignalBlock, base_ts: int) -> list[Any]:
    where = f"block {index} (signal {block.signal_id})"
    sid = _int_scalar(f"{where}: signal_id", block.signal_id, 0, MAX_COUNT + 1)
    exp = _check_scale_exp(block.scale_exp)
    ts, raw = _int_column(f"{where}: ts_ms", block.ts_ms), _int_column(f"{where}: raw", block.raw)
    count = _check_count(where, len(ts), (len(raw),))
    bins = np.empty((2, count * MAX_VARINT_BYTES), dtype=np.uint8)
    what, i, n_ts, n_raw = _signal_bins(ts, raw, base_ts, bins)
    _raise_if_bad(where, what, i, None, ts, raw)
    return [sid, exp, count, bins[0, :n_ts].tobytes(), bins[1, :n_raw].tobytes()]


def _raise_if_bad(where: str, what: int, i: int, ids: np.ndarray | None, ts: np.ndarray, raw: np.ndarray) -> None:
    if what == _BAD_TS:
        raise EncodeError(f"{where}: ts_ms[{i}]={ts[i]} is outside [0, 2**48)")
    if what == _BAD_RAW:
        raise EncodeError(f"{where}: raw/value[{i}]={raw[i]} is outside (-2**53, 2**53)")
    if what == _BAD_ID:
        assert ids is not None  # only the events kernel checks ids
        raise EncodeError(f"{where}: event_id[{i}]={ids[i]} is outside [0, {MAX_COUNT}]")


def _pack(message: list[Any]) -> bytes:
    payload: bytes = msgpack.packb(message, use_bin_type=True)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EncodeError(f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} byte cap: split it")
    return payload


def _text(index: int, text: str) -> str:
    if not isinstance(text, str):
        raise EncodeError(f"text {index} must be a str, got {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise EncodeError(f"text {index} cannot be encoded as UTF-8 (lone surrogate?)") from exc
    if size > MAX_TEXT_BYTES:
        raise EncodeError(f"text {index} is {size} UTF-8 bytes, the limit is {MAX_TEXT_BYTES}")
    return text


def _int_scalar(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        v = operator.index(value)
    except TypeError as exc:
        raise EncodeError(f"{name} must be an integer, got {type(value).__name__}") from exc
    if not lo <= v < hi:
        raise EncodeError(f"{name}={v} is outside [{lo}, {hi})")
    return v


def _int_column(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or not (arr.dtype.kind in "iu" or arr.size == 0):
        raise EncodeError(f"{name} must be a 1-D integer array, got {arr.dtype} with shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise EncodeError(f"{name} has values beyond int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_count(where: str, count: int, others: tuple[int, ...]) -> int:
    if any(n != count for n in others):
        raise EncodeError(f"{where}: columns differ in length ({count} vs {others})")
    if not 1 <= count <= MAX_COUNT:
        raise EncodeError(f"{where}: count {count} is outside [1, {MAX_COUNT}]")
    return count


def _check_scale_exp(scale_exp: int) -> int:
    return _int_scalar("scale_exp", scale_exp, -SCALE_EXP_MAX, SCALE_EXP_MAX + 1)


# --- kernels. numba does not inline calls between jitted functions, so the
# LEB128 writer is spelled out in each loop rather than called per sample.


@njit(cache=True, nogil=True)
def _quantize(x: np.ndarray, exp: int, out: np.ndarray) -> int:
    """Fills out; returns the first bad index (NaN, inf, |raw| >= 2**53) or -1."""
    for i in range(len(x)):
        y = x[i] / POW10[exp] if exp >= 0 else x[i] * POW10[-exp]
        if not abs(y) < RAW_LIMIT:  # also catches NaN
            return i
        whole = np.trunc(y)
        if abs(y - whole) >= 0.5:  # y - trunc(y) is exact, so the half-way test is too
            whole += 1.0 if y > 0 else -1.0
        if abs(whole) >= RAW_LIMIT:
            return i
        out[i] = np.int64(whole)
    return -1


@njit(cache=True, nogil=True, inline="always")
def _put_varint(out: np.ndarray, row: int, n: int, u: int) -> int:
    """Write `u` as LEB128 at out[row, n:]; returns the next free position.

    inline="always": numba does not inline plain calls, and this runs once per value.
    """
    while u >= 0x80:
        out[row, n] = (u & 0x7F) | 0x80
        u >>= 7
        n += 1
    out[row, n] = u
    return n + 1


@njit(cache=True, nogil=True)
def _signal_bins(ts: np.ndarray, raw: np.ndarray, base: int, out: np.ndarray) -> tuple[int, int, int, int]:
    """ts codes (t0 - base, first delta, then deltas of deltas) into out[0], raw deltas into out[1].

    Returns (verdict, first bad index, ts bytes, raw bytes).
    """
    n_ts, n_raw = 0, 0
    prev_t, prev_delta, prev_r = base, 0, 0
    for i in range(len(ts)):
        t, r = ts[i], raw[i]
        if t < 0 or t >= TS_LIMIT:
            return _BAD_TS, i, 0, 0
        if r <= -RAW_LIMIT or r >= RAW_LIMIT:
            return _BAD_RAW, i, 0, 0
        delta = t - prev_t
        code = delta if i < 2 else delta - prev_delta
        prev_t, prev_delta = t, delta
        n_ts = _put_varint(out, 0, n_ts, (code << 1) ^ (code >> 63))
        d = r - prev_r
        prev_r = r
        n_raw = _put_varint(out, 1, n_raw, (d << 1) ^ (d >> 63))
    return _FINE, -1, n_ts, n_raw


@njit(cache=True, nogil=True)
def _event_bins(
    ids: np.ndarray, ts: np.ndarray, val: np.ndarray, base: int, out: np.ndarray
) -> tuple[int, int, int, int, int]:
    """ids (plain), ts deltas from the previous event (base for the first), values (not delta coded).

    Returns (verdict, first bad index, id bytes, ts bytes, value bytes).
    """
    sizes = np.zeros(3, dtype=np.int64)
    prev_t = base
    for i in range(len(ids)):
        if ids[i] < 0 or ids[i] > MAX_COUNT:
            return _BAD_ID, i, 0, 0, 0
        if ts[i] < 0 or ts[i] >= TS_LIMIT:
            return _BAD_TS, i, 0, 0, 0
        if val[i] <= -RAW_LIMIT or val[i] >= RAW_LIMIT:
            return _BAD_RAW, i, 0, 0, 0
        delta = ts[i] - prev_t
        prev_t = ts[i]
        sizes[0] = _put_varint(out, 0, sizes[0], ids[i])
        sizes[1] = _put_varint(out, 1, sizes[1], (delta << 1) ^ (delta >> 63))
        sizes[2] = _put_varint(out, 2, sizes[2], (val[i] << 1) ^ (val[i] >> 63))
    return _FINE, -1, sizes[0], sizes[1], sizes[2]
