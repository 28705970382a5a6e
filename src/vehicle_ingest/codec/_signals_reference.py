"""Plain-Python parsers of the signals body (kind 1) and the events body (kind 2).

Slow on purpose: one Python object per sample. Each returns the message's
items; the caller checks for trailing bytes and emptiness.
"""

from __future__ import annotations

from vehicle_ingest.codec._limits import MAX_COUNT, MAX_TEXT_BYTES, POW10, RAW_LIMIT, SCALE_EXP_MAX, TS_LIMIT
from vehicle_ingest.codec._msgpack_reference import Cursor, read_bin
from vehicle_ingest.codec._wire import BLOCK_FIELDS, EVENTS_FIELDS, BinMode

__all__ = ["Event", "Sample", "events_body", "signals_body"]

Sample = tuple[int, int, float]  # (signal id, ts, value)
Event = tuple[int, int, int, str]  # (event id, ts, value, text)


def _scale(raw: int, scale_exp: int) -> float:
    # Division for negative exponents: 1234 / 10.0 is exactly 123.4, 1234 * 0.1 is not.
    value: float = float(raw) * POW10[scale_exp] if scale_exp >= 0 else float(raw) / POW10[-scale_exp]
    return value


def signals_body(cur: Cursor, base_ts: int) -> list[Sample]:
    """The array of [signal_id, scale_exp, count, ts, values] blocks."""
    samples: list[Sample] = []
    for _ in range(cur.array()):
        block_start = cur.pos
        if cur.array() != BLOCK_FIELDS:
            raise cur.fail(block_start)
        signal_id = cur.uint(MAX_COUNT + 1)
        scale_exp = cur.sint(-SCALE_EXP_MAX, SCALE_EXP_MAX)
        count_start = cur.pos
        count = cur.uint(MAX_COUNT + 1)
        if count == 0:
            raise cur.fail(count_start)
        ts = read_bin(cur, BinMode.DELTA_OF_DELTA, count, 0, TS_LIMIT, start=base_ts)
        raws = read_bin(cur, BinMode.DELTA, count, 1 - RAW_LIMIT, RAW_LIMIT)
        samples.extend((signal_id, t, _scale(r, scale_exp)) for t, r in zip(ts, raws, strict=True))
    return samples


def events_body(cur: Cursor, base_ts: int, body_offset: int) -> list[Event]:
    """[count, event_ids, ts, values, texts]."""
    if cur.array() != EVENTS_FIELDS:
        raise cur.fail(body_offset)
    count = cur.uint(MAX_COUNT + 1)
    ids = read_bin(cur, BinMode.UNSIGNED, count, 0, MAX_COUNT + 1)
    ts = read_bin(cur, BinMode.DELTA, count, 0, TS_LIMIT, start=base_ts)
    values = read_bin(cur, BinMode.ZIGZAG, count, 1 - RAW_LIMIT, RAW_LIMIT)
    texts = _texts(cur, count)
    return list(zip(ids, ts, values, texts, strict=True))


def _texts(cur: Cursor, count: int) -> list[str]:
    array_start = cur.pos
    if cur.array() != count:
        raise cur.fail(array_start)
    out = []
    for _ in range(count):
        start = cur.pos
        raw = cur.raw_str()
        if len(raw) > MAX_TEXT_BYTES:
            raise cur.fail(start)
        try:
            out.append(raw.decode("utf-8"))  # strict: no overlongs, no surrogates, max U+10FFFF
        except UnicodeDecodeError:
            raise cur.fail(start) from None
    return out
