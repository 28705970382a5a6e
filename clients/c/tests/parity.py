"""C encoder == Python encoder == golden vectors, byte for byte.

Run from the repository root with the project's virtualenv:

    .venv/bin/python clients/c/tests/parity.py [--cases N] [--seed S] [--variants release,asan]

It builds clients/c (make), prints one line per golden vector of schemas/golden/, then encodes N
generated cases (fixed seed) with both encoders and compares the bytes; a case that either encoder
refuses must be refused by both. tests/test_c_client.py imports this module.
"""

from __future__ import annotations

import argparse
import random
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vehicle_ingest.codec import SignalBlock, encode_can, encode_events, encode_signals, quantize
from vehicle_ingest.errors import EncodeError

ROOT = Path(__file__).resolve().parents[3]
CLIENT = ROOT / "clients" / "c"
GOLDEN = ROOT / "schemas" / "golden"
VARIANTS = ("release", "asan")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"}

TS_LIMIT = 1 << 48
RAW_LIMIT = 1 << 53
VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)
GOLDEN_VIN = "WVWZZZ1JZXW000001"
GOLDEN_BASE = 1_795_341_600_000

Result = bytes | int | None  # payload, quantized raw, or None when the encoder refused the input


@dataclass(frozen=True)
class Case:
    kind: str  # S signals, E events, C CAN, Q quantize
    line: str  # the input line of vi_encode_cli
    python: Callable[[], bytes | int]  # the Python encoder on the same input


@dataclass
class Comparison:
    cases: int = 0
    refused: int = 0  # refused by both encoders (out-of-range input)
    kinds: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def build(variants: Sequence[str] = VARIANTS) -> None:
    """make -C clients/c for the variants; raises with the compiler's output on failure."""
    done = subprocess.run(["make", "-C", str(CLIENT), *variants], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building clients/c failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def binary(variant: str, name: str) -> Path:
    return CLIENT / "build" / variant / name


def run_c(variant: str, lines: Sequence[str]) -> list[str]:
    """Feeds the lines to vi_encode_cli; one output line per input line."""
    done = subprocess.run(
        [str(binary(variant, "vi_encode_cli"))],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **SANITIZER_ENV},
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"vi_encode_cli ({variant}) exited {done.returncode}:\n{done.stderr[-4000:]}")
    out = done.stdout.splitlines()
    if len(out) != len(lines):
        raise RuntimeError(f"vi_encode_cli ({variant}) answered {len(out)} lines for {len(lines)}")
    return out


def python_result(case: Case) -> Result:
    try:
        return case.python()
    except EncodeError:
        return None


def compare(cases: Sequence[Case], outputs: Sequence[str]) -> Comparison:
    result = Comparison()
    for case, out in zip(cases, outputs, strict=True):
        result.cases += 1
        result.kinds[case.kind] += 1
        want = python_result(case)
        if want is None and out.startswith("ERR "):
            result.refused += 1
            continue
        expected = want.hex() if isinstance(want, bytes) else "ERR (Python refused)" if want is None else str(want)
        if out != expected and len(result.mismatches) < 10:
            result.mismatches.append(f"{case.line[:300]}\n    C:      {out[:200]}\n    Python: {expected[:200]}")
        elif out != expected:
            result.mismatches.append(case.line[:80])
    return result


# --- the shipped golden vectors (the inputs of schemas/WIRE_FORMAT.md sections 8, 9 and 12) ---------------


def _signals_line(vin: str, seq: int, base: int, blocks: Sequence[tuple[int, int, list[int], list[int]]]) -> str:
    parts = ["S", vin, str(seq), str(base), str(len(blocks))]
    for sid, exp, ts, raw in blocks:
        parts += [str(sid), str(exp), str(len(ts)), *map(str, ts), *map(str, raw)]
    return " ".join(parts)


def _signals_case(vin: str, seq: int, base: int, blocks: list[tuple[int, int, list[int], list[int]]]) -> Case:
    def python() -> bytes:
        sb = [SignalBlock(s, e, np.array(t, dtype=np.int64), np.array(r, dtype=np.int64)) for s, e, t, r in blocks]
        return encode_signals(vin, seq, base, sb)

    return Case("S", _signals_line(vin, seq, base, blocks), python)


def _events_case(vin: str, seq: int, base: int, events: list[tuple[int, int, int, str]]) -> Case:
    parts = ["E", vin, str(seq), str(base), str(len(events))]
    for eid, ts, value, text in events:
        raw = text.encode("utf-8", "surrogatepass")
        parts += [str(eid), str(ts), str(value), raw.hex() or "-"]

    def python() -> bytes:
        ids, ts, values, texts = (list(c) for c in zip(*events, strict=True)) if events else ([], [], [], [])
        return encode_events(vin, seq, base, ids, ts, values, texts)

    return Case("E", " ".join(parts), python)


def _can_case(vin: str, seq: int, base: int, frames: list[tuple[int, int, int, bool, bool, bytes]]) -> Case:
    parts = ["C", vin, str(seq), str(base), str(len(frames))]
    for ts, bus, arb, ext, fd, data in frames:
        parts += [str(ts), str(bus), str(arb), str(int(ext)), str(int(fd)), data.hex() or "-"]

    def python() -> bytes:
        return encode_can(
            vin,
            seq,
            base,
            [f[0] for f in frames],
            [f[2] for f in frames],
            b"".join(f[5] for f in frames),
            [len(f[5]) for f in frames],
            extended=[f[3] for f in frames],
            fd=[f[4] for f in frames],
            bus=[f[1] for f in frames],
        )

    return Case("C", " ".join(parts), python)


def _quantize_case(value: float, exp: int) -> Case:
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    return Case("Q", f"Q {exp} {bits:016x}", lambda: int(quantize(np.array([value]), exp)[0]))


def golden_cases() -> list[tuple[str, Case]]:
    base, vin = GOLDEN_BASE, GOLDEN_VIN
    speed = [int(r) for r in quantize(np.array([52.3, 52.5, 52.4, 52.4, 52.9]), -1)]
    dist = [int(r) for r in quantize(np.array([48_211_314.0, 48_211_328.0]), 0)]
    signals = _signals_case(
        vin,
        (3 << 32) | 1,
        base,
        [(1, -1, [base + d for d in (0, 200, 400, 601, 800)], speed), (2, 0, [base, base + 1000], dist)],
    )
    events = _events_case(
        vin, (3 << 32) | 2, base, [(1, base + 120, 1, "driver door opened"), (2, base + 130, -40, "ambient: 22.5°C")]
    )
    can = _can_case(
        vin,
        (3 << 32) | 3,
        base,
        [
            (base, 0, 0x0C8, False, False, bytes.fromhex("e803")),
            (base + 10, 0, 0x18FEF100, True, False, bytes.fromhex("0000803f")),
            (base + 20, 1, 0x123, False, True, bytes(range(12))),
        ],
    )
    return [("signals_v1.hex", signals), ("events_v1.hex", events), ("can_v1.hex", can)]


def golden_lines(variant: str) -> tuple[list[str], bool]:
    """One line per golden vector; False when any of C, Python and the file disagree."""
    named = golden_cases()
    outputs = run_c(variant, [case.line for _, case in named])
    lines, ok = [], True
    for (name, case), c_hex in zip(named, outputs, strict=True):
        spec = (GOLDEN / name).read_text().strip()
        py = python_result(case)
        py_hex = py.hex() if isinstance(py, bytes) else "refused"
        same = c_hex == py_hex == spec
        ok &= same
        verdict = "C == Python == spec" if same else f"MISMATCH C={c_hex[:40]} Python={py_hex[:40]} spec={spec[:40]}"
        lines.append(f"golden {name}: {verdict} ({len(spec) // 2} bytes)")
    return lines, ok


# --- generated cases ------------------------------------------------------------------------------------


class _Gen:
    """Random inputs near every boundary of the wire format; ~8 % of them out of range on purpose."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def vin(self) -> str:
        return "".join(self.r.choices(VIN_ALPHABET, k=17))

    def seq(self) -> int:
        r = self.r
        edges = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
        pick = r.random()
        if pick < 0.3:
            return r.choice(edges)
        if pick < 0.6:
            return (r.randint(0, 50) << 32) | r.randint(0, 10_000)
        return r.getrandbits(64)

    def base(self) -> int:
        r = self.r
        pick = r.random()
        if pick < 0.2:
            return r.choice([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, TS_LIMIT - 1])
        if pick < 0.8:
            return 1_790_000_000_000 + r.randint(0, 10**10)
        return r.randint(0, TS_LIMIT - 1)

    def clamp_ts(self, t: int) -> int:
        return min(max(t, 0), TS_LIMIT - 1)

    def timestamps(self, base: int, n: int) -> list[int]:
        r = self.r
        start = self.clamp_ts(base + r.choice([0, 0, r.randint(-1000, 1000), r.randint(-(2**30), 2**30)]))
        period = r.choice([1, 10, 100, 200, 1000, 60_000])
        jitter = r.choice([0, 0, 1, 2, 15, 100])
        out, t = [], start
        for _ in range(n):
            step = period + r.randint(-jitter, jitter)
            if r.random() < 0.02:
                step = r.choice([r.randint(2**20, 2**40), -r.randint(1, 2**30)])  # a large gap / a jump back
            out.append(self.clamp_ts(t))
            t += step
        if n > 2 and r.random() < 0.1:
            i, j = r.randrange(n), r.randrange(n)
            out[i], out[j] = out[j], out[i]  # out of order
        return out

    def values(self, n: int) -> list[int]:
        r = self.r
        limit = RAW_LIMIT - 1
        style = r.choice(["small", "medium", "large", "extreme", "constant"])
        v = r.choice([0, r.randint(-1000, 1000), r.randint(-limit, limit)])
        out = []
        for i in range(n):
            if style == "extreme":
                v = limit if i % 2 else -limit
            elif style != "constant":
                bound = {"small": 63, "medium": 8191, "large": 2**30}[style]
                v = min(max(v + r.randint(-bound, bound), -limit), limit)
            out.append(v)
        return out

    def count(self, small: int, medium: tuple[int, int], large: tuple[int, int]) -> int:
        pick = self.r.random()
        if pick < 0.9:
            return self.r.randint(1, small)
        if pick < 0.98:
            return self.r.randint(*medium)
        return self.r.randint(*large)

    def signals(self) -> Case:
        r = self.r
        vin, seq, base = self.vin(), self.seq(), self.base()
        n_blocks = r.randint(14, 20) if r.random() < 0.05 else r.randint(1, 4)
        blocks = []
        for _ in range(n_blocks):
            sid = r.choice([0, 1, 2, 127, 128, 255, 256, 65535, r.randint(0, 65535)])
            n = self.count(12, (100, 600), (2000, 6000))
            blocks.append((sid, r.randint(-12, 12), self.timestamps(base, n), self.values(n)))
        if r.random() < 0.08:
            self.break_signals(blocks)
            if r.random() < 0.15:
                base = TS_LIMIT
        return _signals_case(vin, seq, base, blocks)

    def break_signals(self, blocks: list[tuple[int, int, list[int], list[int]]]) -> None:
        r = self.r
        b = r.randrange(len(blocks))
        sid, exp, ts, raw = blocks[b]
        i = r.randrange(len(ts))
        what = r.choice(["ts_low", "ts_high", "raw_high", "raw_low", "exp", "empty", "no_blocks"])
        if what == "ts_low":
            ts[i] = -1
        elif what == "ts_high":
            ts[i] = TS_LIMIT
        elif what == "raw_high":
            raw[i] = RAW_LIMIT
        elif what == "raw_low":
            raw[i] = -RAW_LIMIT
        elif what == "exp":
            blocks[b] = (sid, r.choice([-13, 13, 100]), ts, raw)
        elif what == "empty":
            blocks[b] = (sid, exp, [], [])
        else:
            blocks.clear()

    def text(self) -> str:
        r = self.r
        pool = ["é", "€", "😀", "音", "ß", "\u0000", "a", "Z", " ", "\u07ff", "\u0800", "\uffff", "\U0010ffff"]
        style = r.random()
        if style < 0.15:
            return ""
        if style < 0.35:
            size = r.choice([31, 32, 255])  # fixstr / str8 boundaries, and the limit
            return "x" * size
        out = "".join(
            r.choice(pool) if r.random() < 0.4 else chr(r.randint(0x20, 0x7E)) for _ in range(r.randint(1, 40))
        )
        while len(out.encode()) > 255:
            out = out[:-1]
        return out

    def events(self) -> Case:
        r = self.r
        vin, seq, base = self.vin(), self.seq(), self.base()
        n = self.count(10, (15, 20), (200, 300))
        ts = self.timestamps(base, n)
        evs = [
            (r.choice([0, 1, 127, 128, 65535, r.randint(0, 65535)]), ts[i], v, self.text())
            for i, v in enumerate(self.values(n))
        ]
        if r.random() < 0.08:
            i = r.randrange(n)
            eid, t, v, text = evs[i]
            evs[i] = r.choice(
                [
                    (eid, -1, v, text),
                    (eid, TS_LIMIT, v, text),
                    (eid, t, RAW_LIMIT, text),
                    (eid, t, -RAW_LIMIT, text),
                    (eid, t, v, "y" * 256),
                    (eid, t, v, "é" * 128),
                    (eid, t, v, "lone \ud800 surrogate"),
                ]
            )
            if r.random() < 0.1:
                evs = []
        return _events_case(vin, seq, base, evs)

    def can(self) -> Case:
        r = self.r
        vin, seq, base = self.vin(), self.seq(), self.base()
        n = self.count(10, (30, 80), (300, 400))
        ts = self.timestamps(base, n)
        frames = []
        for t in ts:
            ext, fd = r.random() < 0.4, r.random() < 0.4
            limit = 1 << (29 if ext else 11)
            arb = r.choice([0, 1, limit - 1, r.randrange(limit)])
            size = r.choice(FD_LENGTHS if fd else FD_LENGTHS[:9])
            frames.append((t, r.randint(0, 255), arb, ext, fd, r.randbytes(size)))
        if r.random() < 0.08:
            i = r.randrange(n)
            t, bus, arb, ext, fd, data = frames[i]
            frames[i] = r.choice(
                [
                    (t, bus, 1 << (29 if ext else 11), ext, fd, data),
                    (t, bus, arb, ext, False, r.randbytes(r.choice([9, 12, 15]))),
                    (t, bus, arb, ext, True, r.randbytes(r.choice([9, 13, 63]))),
                    (-1, bus, arb, ext, fd, data),
                    (TS_LIMIT, bus, arb, ext, fd, data),
                ]
            )
            if r.random() < 0.1:
                frames = []
        return _can_case(vin, seq, base, frames)

    def quantize(self) -> Case:
        r = self.r
        exp = r.randint(-12, 12) if r.random() < 0.97 else r.choice([-13, 13])
        scale = 10.0 ** min(max(exp, -12), 12)
        pick = r.random()
        if pick < 0.3:
            value = r.uniform(-1e6, 1e6) * scale
        elif pick < 0.55:
            value = (r.randint(-(10**9), 10**9) + 0.5) * scale  # half-way cases
        elif pick < 0.75:
            value = r.choice([0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 52.34, float("nan"), float("inf"), -float("inf")])
        elif pick < 0.9:
            value = r.choice([1, -1]) * r.choice([2.0**53, 2.0**53 - 1, 2.0**52 + 0.5, 9.1e15]) * scale
        else:
            value = struct.unpack("<d", struct.pack("<Q", r.getrandbits(64)))[0]
        return _quantize_case(value, exp)

    def oversize(self, over: bool) -> Case:
        """One block of extreme values: about 9 bytes per sample, just under or over the 256 KiB cap."""
        n = 29_300 if over else 28_900
        limit = RAW_LIMIT - 1
        raw = [limit if i % 2 else -limit for i in range(n)]
        base = 1_790_000_000_000
        return _signals_case(self.vin(), 1, base, [(1, 0, [base + 10 * i for i in range(n)], raw)])


def generate_cases(seed: int, n: int) -> list[Case]:
    """n cases from a fixed seed: signals 45 %, events 25 %, CAN 20 %, quantize 10 %, plus two at the size cap."""
    gen = _Gen(seed)
    makers = [gen.signals] * 45 + [gen.events] * 25 + [gen.can] * 20 + [gen.quantize] * 10
    cases = [gen.r.choice(makers)() for _ in range(max(n - 2, 0))]
    return [*cases, gen.oversize(False), gen.oversize(True)][:n]


def check_variant(variant: str, cases: Sequence[Case]) -> Comparison:
    return compare(cases, run_c(variant, [c.line for c in cases]))


def summary_line(variant: str, result: Comparison) -> str:
    kinds = ", ".join(
        f"{result.kinds[k]} {name}" for k, name in zip("SECQ", ("signals", "events", "CAN", "quantize"), strict=True)
    )
    verdict = "all identical" if result.ok else f"{len(result.mismatches)} MISMATCHES"
    return (
        f"generated ({variant}): {result.cases} cases ({kinds}); {verdict}; "
        f"{result.refused} out-of-range inputs refused by both"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if not args.no_build:
        build(variants)
    ok = True
    lines, golden_ok = golden_lines(variants[0])
    print("\n".join(lines))
    ok &= golden_ok
    cases = generate_cases(args.seed, args.cases)
    for variant in variants:
        if variant != variants[0]:
            _, same = golden_lines(variant)
            ok &= same
        result = check_variant(variant, cases)
        print(summary_line(variant, result))
        for m in result.mismatches[:10]:
            print("  " + m)
        ok &= result.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
