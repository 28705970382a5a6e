"""Encoder for wire format v1 (see schemas/WIRE_FORMAT.md).

Varint packing is vectorized numpy: the simulator encodes millions of samples
per second, so no Python code runs per sample. msgpack-python frames the
header and the per-block arrays; the sample data travels as `bin` blobs.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from vehicle_ingest.codec._types import FORMAT_VERSION, MAX_PAYLOAD_BYTES, VIN_LENGTH, Kind
from vehicle_ingest.errors import EncodeError

__all__ = ["POW10", "SignalBlock", "encode_events", "encode_signals", "quantize"]

TS_LIMIT = 1 << 48  # timestamps are ms since epoch in [0, 2**48)
RAW_LIMIT = 1 << 53  # |raw| < 2**53 so every raw value is exact as a float64
SCALE_EXP_MIN, SCALE_EXP_MAX = -12, 12
MAX_COUNT = 0xFFFF
MAX_TEXT_BYTES = 255

# One table for the encoder and both decoders: every power up to 10**22 is exact
# in float64, so value = raw * POW10[e] or raw / POW10[-e] is bit-identical everywhere.
POW10 = np.array([10.0**k for k in range(SCALE_EXP_MAX + 1)], dtype=np.float64)
POW10.flags.writeable = False

# Thresholds at which a varint needs one more byte; the last one (2**56) means "too long".
_VARINT_STEPS = np.array([1 << (7 * k) for k in range(1, 9)], dtype=np.int64)


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
    x = np.asarray(values, dtype=np.float64)
    if not np.isfinite(x).all():
        raise EncodeError("quantize: values must be finite (no NaN or inf)")
    x = x / POW10[exp] if exp >= 0 else x * POW10[-exp]
    whole = np.trunc(x)
    # x - trunc(x) is exact in float64, so the half-way test is exact too.
    rounded = whole + np.copysign((np.abs(x - whole) >= 0.5).astype(np.float64), x)
    if (np.abs(rounded) >= RAW_LIMIT).any():
        raise EncodeError(f"quantize: a value is too large for scale_exp {exp} (|raw| must be < 2**53)")
    return rounded.astype(np.int64)


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
    event_id: Any,
    ts_ms: Any,
    value: Any,
    text: Sequence[str],
) -> bytes:
    """One events payload (kind 2): event i is (event_id[i], ts_ms[i], value[i], text[i])."""
    header = _header(Kind.EVENTS, vin, seq, base_ts_ms)
    ids = _int_column("event_id", event_id)
    ts = _int_column("ts_ms", ts_ms)
    val = _int_column("value", value)
    count = _check_count("events", len(ids), (len(ts), len(val), len(text)))
    _check_range("event_id", ids, 0, MAX_COUNT + 1)
    _check_range("ts_ms", ts, 0, TS_LIMIT)
    _check_range("value", val, -RAW_LIMIT + 1, RAW_LIMIT)
    texts = [_text(i, t) for i, t in enumerate(text)]
    # Event ids are small unsigned numbers, values are independent: neither is delta coded.
    ts_deltas = np.diff(ts, prepend=np.int64(header[4]))
    body = [count, pack_varints(ids), pack_varints(zigzag(ts_deltas)), pack_varints(zigzag(val)), texts]
    return _pack([*header, body])


def zigzag(n: np.ndarray) -> np.ndarray:
    """Signed int64 -> non-negative int64 (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...)."""
    return (n << 1) ^ (n >> 63)


def pack_varints(u: np.ndarray) -> bytes:
    """LEB128 bytes of non-negative int64 values below 2**56 (at most 8 bytes each)."""
    u = np.ascontiguousarray(u, dtype=np.int64)
    nbytes = 1 + np.searchsorted(_VARINT_STEPS, u, side="right")
    if len(u) and nbytes.max() > 8:
        raise EncodeError("varint over 8 bytes (a delta is out of range)")
    ends = np.cumsum(nbytes)
    out = np.empty(int(ends[-1]) if len(u) else 0, dtype=np.uint8)
    starts = ends - nbytes
    for k in range(int(nbytes.max()) if len(u) else 0):
        live = nbytes > k
        group = (u[live] >> (7 * k)) & 0x7F
        more = (nbytes[live] > k + 1).astype(np.int64) << 7
        out[starts[live] + k] = group | more
    return out.tobytes()


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
    ts = _int_column(f"{where}: ts_ms", block.ts_ms)
    raw = _int_column(f"{where}: raw", block.raw)
    count = _check_count(where, len(ts), (len(raw),))
    _check_range(f"{where}: ts_ms", ts, 0, TS_LIMIT)
    _check_range(f"{where}: raw", raw, -RAW_LIMIT + 1, RAW_LIMIT)
    ts_bin = pack_varints(zigzag(_ts_codes(ts, base_ts)))
    return [sid, exp, count, ts_bin, pack_varints(zigzag(np.diff(raw, prepend=0)))]


def _ts_codes(ts: np.ndarray, base_ts: int) -> np.ndarray:
    """[t0 - base, t1 - t0, then delta-of-delta]: regular sampling turns into zeros."""
    deltas = np.diff(ts, prepend=np.int64(base_ts))
    codes = deltas.copy()
    codes[2:] = np.diff(deltas[1:])
    return codes


def _pack(message: list[Any]) -> bytes:
    payload = msgpack.packb(message, use_bin_type=True)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EncodeError(f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} byte cap: split it")
    return payload


def _text(index: int, text: str) -> str:
    if not isinstance(text, str):
        raise EncodeError(f"text {index} must be a str, got {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise EncodeError(f"text {index} is not encodable as UTF-8 (lone surrogate?)") from exc
    if size > MAX_TEXT_BYTES:
        raise EncodeError(f"text {index} is {size} UTF-8 bytes, the limit is {MAX_TEXT_BYTES}")
    return text


def _int_scalar(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        v = operator.index(value)
    except TypeError as exc:
        raise EncodeError(f"{name} must be an integer, got {type(value).__name__}") from exc
    if not lo <= v < hi:
        raise EncodeError(f"{name}={v} is out of range [{lo}, {hi})")
    return v


def _int_column(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or not (arr.dtype.kind in "iu" or arr.size == 0):
        raise EncodeError(f"{name} must be a 1-D integer array, got {arr.dtype} with shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise EncodeError(f"{name} has values beyond int64")
    return arr.astype(np.int64, copy=False)


def _check_count(where: str, count: int, others: tuple[int, ...]) -> int:
    if any(n != count for n in others):
        raise EncodeError(f"{where}: columns differ in length ({count} vs {others})")
    if not 1 <= count <= MAX_COUNT:
        raise EncodeError(f"{where}: count {count} is out of range [1, {MAX_COUNT}]")
    return count


def _check_range(name: str, arr: np.ndarray, lo: int, hi: int) -> None:
    bad = (arr < lo) | (arr >= hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise EncodeError(f"{name}[{i}]={int(arr[i])} is out of range [{lo}, {hi})")


def _check_scale_exp(scale_exp: int) -> int:
    return _int_scalar("scale_exp", scale_exp, SCALE_EXP_MIN, SCALE_EXP_MAX + 1)
