"""Atheris harness for the payload decoders (signals and events, wire format v1).

    python fuzz/fuzz_codec.py -atheris_runs=1000000 [libFuzzer flags] [corpus dirs]

Each input is decoded by the numba decoder inside a batch framed by two valid
payloads, and alone by the reference decoder. Findings are: an exception from either decoder,
any difference between them (status, offset, every column bit for bit), a valid
neighbour disturbed by the hostile payload, or output larger than its input allows.

The first input byte picks what the rest is: a whole payload, or the body after a
valid signals header, or the body after a valid events header. The prefixed modes
spend the fuzzer's effort past the header, where the block and bin parsers live.
Only the reference decoder is instrumented for coverage: numba compiles the other
one from bytecode, and coverage hooks in that bytecode would break its compilation.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import atheris
import msgpack
import numpy as np
from _compare import same_array  # fuzz/ is on sys.path: harnesses run as scripts

from vehicle_ingest.codec import (
    DecodedBatch,
    MessageColumns,
    SignalBlock,
    Status,
    _decode_reference,
    _msgpack_reference,
    _signals_reference,
    decode,
    decode_reference,
    encode_events,
    encode_signals,
)


def instrument_module(module: object) -> None:
    """Coverage hooks in the module's own functions and methods (not in what it imports)."""
    name = module.__name__
    for obj in vars(module).values():
        if inspect.isfunction(obj) and obj.__module__ == name:
            atheris.instrument_func(obj)
        elif inspect.isclass(obj) and obj.__module__ == name:
            for member in vars(obj).values():
                if inspect.isfunction(member):
                    atheris.instrument_func(member)


for _module in (_msgpack_reference, _signals_reference, _decode_reference):
    instrument_module(_module)

VIN = "WVWZZZ1JZXW000001"
BASE = 1_795_341_600_000
MAX_INPUT = 4096
CORPUS = Path(__file__).resolve().parent.parent / ".fuzz" / "codec"


def _signals(seq: int, n: int = 3) -> bytes:
    ts = BASE + np.arange(n, dtype=np.int64) * 100
    raw = np.arange(n, dtype=np.int64) * 7 - 3
    blocks = [SignalBlock(1, -1, ts, raw), SignalBlock(300, 2, ts[:1], raw[:1])]
    return encode_signals(VIN, seq, BASE, blocks)


def _events(seq: int) -> bytes:
    ts = np.array([BASE, BASE + 5], np.int64)
    return encode_events(VIN, seq, BASE, np.array([1, 2], np.uint16), ts, np.array([0, -9], np.int64), ["", "ä"])


NEIGHBOURS = (_signals(1), _events(2))
# fixarray(6), version, kind, VIN, seq, base_ts: a fixarray(5) of the same fields is as long.
_HEADER_LEN = len(msgpack.packb([1, 1, VIN, 7, BASE]))
PREFIXES = (b"", _signals(7)[:_HEADER_LEN], _events(7)[:_HEADER_LEN])


def payload_of(data: bytes) -> bytes:
    if not data:
        return b""
    return PREFIXES[data[0] % len(PREFIXES)] + data[1:]


_MESSAGE_FIELDS = tuple(MessageColumns.__dataclass_fields__)
_ITEM_FIELDS = {"samples": ("signal_id", "ts", "value"), "events": ("event_id", "ts", "value", "text")}


def _check(what: str, a: np.ndarray, b: np.ndarray) -> None:
    if not same_array(a, b):
        raise AssertionError(f"{what}: numba {a!r} != reference {b!r}")


def assert_same_message(fast: DecodedBatch, ref: DecodedBatch) -> None:
    """Row 1 of `fast` (the hostile payload between its neighbours) against `ref`'s only row."""
    for name in _MESSAGE_FIELDS:
        _check(f"messages.{name}", getattr(fast.messages, name)[1:2], getattr(ref.messages, name))
    # Neighbour 0 carries only samples, neighbour 2 only events: the hostile's items are the rest.
    mine = {"samples": slice(N_FIRST, None), "events": slice(0, len(fast.events) - N_LAST)}
    for part, fields in _ITEM_FIELDS.items():
        cols, ref_cols = getattr(fast, part), getattr(ref, part)
        for name in fields:
            _check(f"{part}.{name}", getattr(cols, name)[mine[part]], getattr(ref_cols, name))


def assert_bounded(ref: DecodedBatch, payload: bytes) -> None:
    """Every sample needs at least 2 bytes (ts and raw varints), every event at least 4."""
    if 2 * len(ref.samples) + 4 * len(ref.events) > len(payload):
        raise AssertionError(f"{len(ref.samples)} samples, {len(ref.events)} events from {len(payload)} bytes")


def assert_neighbours_intact(fast: DecodedBatch) -> None:
    m = fast.messages
    if m.status[0] != Status.OK or m.status[2] != Status.OK or m.seq[0] != 1 or m.seq[2] != 2:
        raise AssertionError(f"valid neighbours disturbed: status {m.status}, seq {m.seq}")
    s, e = fast.samples, fast.events
    first = (s.signal_id[:N_FIRST], s.ts[:N_FIRST], s.value[:N_FIRST])
    last = (e.event_id[len(e) - N_LAST :], e.ts[len(e) - N_LAST :], e.value[len(e) - N_LAST :])
    for got, want in zip((*first, *last), CLEAN, strict=True):
        if not same_array(got, want):
            raise AssertionError("a hostile payload changed its valid neighbours' data")


_clean = decode(list(NEIGHBOURS))
N_FIRST, N_LAST = len(_clean.samples), len(_clean.events)
CLEAN = (
    _clean.samples.signal_id,
    _clean.samples.ts,
    _clean.samples.value,
    _clean.events.event_id,
    _clean.events.ts,
    _clean.events.value,
)


def test_one_input(data: bytes) -> None:
    """The hostile payload decoded between two valid ones (numba) and alone (reference)."""
    payload = payload_of(data[:MAX_INPUT])
    fast = decode([NEIGHBOURS[0], payload, NEIGHBOURS[1]])
    ref = decode_reference([payload])
    assert_same_message(fast, ref)
    assert_bounded(ref, payload)
    assert_neighbours_intact(fast)


def seed_corpus(directory: Path) -> None:
    """Valid payloads of each mode, so mutation starts from deep inside the format."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        return
    seeds = {"raw-signals": b"\x00" + _signals(3, 20), "raw-events": b"\x00" + _events(4)}
    seeds["body-signals"] = b"\x01" + _signals(5, 8)[_HEADER_LEN:]
    seeds["body-events"] = b"\x02" + _events(6)[_HEADER_LEN:]
    for name, data in seeds.items():
        (directory / name).write_bytes(data)


def main() -> None:
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        seed_corpus(CORPUS)
        args.append(str(CORPUS))
    if not any(a.startswith("-max_len") for a in args):
        args.append(f"-max_len={MAX_INPUT}")
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
