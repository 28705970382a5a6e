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

from vehicle_ingest.codec import (
    DecodedBatch,
    SignalBlock,
    _reference_decode,
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


instrument_module(_reference_decode)

VIN = "WVWZZZ1JZXW000001"
BASE = 1_795_341_600_000
MAX_INPUT = 4096
CORPUS = Path(__file__).resolve().parent.parent / ".fuzz" / "codec"


def _signals(seq: int, n: int = 3) -> bytes:
    ts = BASE + np.arange(n, dtype=np.int64) * 100
    raw = np.arange(n, dtype=np.int64) * 7 - 3
    return encode_signals(VIN, seq, BASE, [SignalBlock(1, -1, ts, raw), SignalBlock(300, 2, ts[:1], raw[:1])])


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


def _row(batch: DecodedBatch, msg: int) -> dict[str, list]:
    """Everything `batch` says about message `msg`, as plain lists (bitwise for floats)."""
    out: dict[str, list] = {}
    m = batch.messages
    for name in m.__dataclass_fields__:
        out[f"messages.{name}"] = [getattr(m, name)[msg].tobytes()]
    for part in ("samples", "events"):
        cols = getattr(batch, part)
        mine = cols.msg == msg
        for name in cols.__dataclass_fields__:
            if name != "msg":
                col = getattr(cols, name)[mine]
                out[f"{part}.{name}"] = col.tolist() if col.dtype == object else [col.tobytes(), col.dtype]
    return out


def assert_same(fast: dict[str, list], ref: dict[str, list]) -> None:
    for key, value in fast.items():
        if value != ref[key]:
            raise AssertionError(f"{key}: numba {value!r} != reference {ref[key]!r}")


def assert_bounded(batch: DecodedBatch, payload: bytes) -> None:
    """Every sample needs at least 2 bytes (ts and raw varints), every event at least 4."""
    mine_s = int((batch.samples.msg == 1).sum())
    mine_e = int((batch.events.msg == 1).sum())
    if 2 * mine_s + 4 * mine_e > len(payload):
        raise AssertionError(f"{mine_s} samples, {mine_e} events from {len(payload)} bytes")


def assert_neighbours_intact(batch: DecodedBatch) -> None:
    for neighbour, clean in ((0, CLEAN_FIRST), (2, CLEAN_LAST)):
        if _row(batch, neighbour) != clean:
            raise AssertionError(f"a hostile payload changed valid neighbour {neighbour}: {batch.messages.status}")


CLEAN_FIRST = _row(decode(list(NEIGHBOURS)), 0)
CLEAN_LAST = _row(decode(list(NEIGHBOURS)), 1)


def test_one_input(data: bytes) -> None:
    """The hostile payload decoded between two valid ones (numba) and alone (reference)."""
    payload = payload_of(data[:MAX_INPUT])
    fast = decode([NEIGHBOURS[0], payload, NEIGHBOURS[1]])
    ref = decode_reference([payload])
    assert_same(_row(fast, 1), _row(ref, 0))
    assert_bounded(fast, payload)
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
