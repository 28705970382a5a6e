"""Parity of the numba CAN decoder with cantools over DBC files (opendbc's, by default).

For every message of every DBC: random frames from a fixed seed (multiplexer
switches set to values the DBC defines, a share of frames cut short, a share
longer than the DBC declares), decoded by cantools `decode_message` and by
`decode_frames`; every signal must come out of both, raw values bit-exact,
scaled values within float tolerance, and the exact value of every integer
signal (`Manifest.sig_integer`) equal to the int cantools returns. No value of
a signal beyond its message's declared length may come out (cantools refuses
such messages).

`python -m tests.can_parity [--frames N] [--json]` runs all of opendbc (make can-parity): the DBC
files it ships and those its generator assembles (`*_generated.dbc`, CAN FD ones among them).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vehicle_ingest.can import Manifest, SignalValues, decode_frames, decode_frames_reference
from vehicle_ingest.can.manifest import manifest_from_database

SEED = 20261122
TRUNCATED_SHARE = 0.15
EXCESS_SHARE = 0.05  # frames longer than the DBC declares: cantools ignores the excess bytes


def opendbc_files() -> list[Path]:
    import opendbc

    return sorted(Path(opendbc.__file__).parent.rglob("*.dbc"))


def opendbc_generated(folder: Path) -> list[Path]:
    """The DBCs opendbc's generator assembles from its templates, written to `folder`."""
    from opendbc.dbc.generator.generator import generate_all

    paths = []
    for name, text in sorted(generate_all().items()):
        paths.append(folder / f"{name}.dbc")
        paths[-1].write_text(text)
    return paths


@dataclass
class Report:
    dbcs: int = 0
    messages: int = 0
    signals: int = 0
    multiplexed_messages: int = 0
    frames: int = 0
    values: int = 0
    values_exact: int = 0
    values_integer: int = 0  # values of integer signals whose exact value equals cantools' int
    integers_beyond_int64: int = 0  # cantools returned an int for a signal whose results exceed int64: raw checked
    cantools_rejected_frames: int = 0
    cantools_rejections: dict[str, int] = field(default_factory=dict)
    messages_cantools_cannot_decode: list[str] = field(default_factory=list)
    reference_mismatches: int = 0
    unloadable: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


def write_raw(frame: bytearray, pos: int, length: int, big_endian: bool, raw: int) -> None:
    """Put `raw` (unsigned bits) at a signal's place, the inverse of reference read_raw."""
    total = 8 * len(frame)
    mask = (1 << length) - 1
    if big_endian:
        shift = total - pos - length
        whole = int.from_bytes(frame, "big")
        frame[:] = ((whole & ~(mask << shift)) | ((raw & mask) << shift)).to_bytes(len(frame), "big")
    else:
        whole = int.from_bytes(frame, "little")
        frame[:] = ((whole & ~(mask << pos)) | ((raw & mask) << pos)).to_bytes(len(frame), "little")


def _frames_for(m: Manifest, msg: int, n: int, rng: np.random.Generator) -> tuple[list[bytes], list[int]]:
    """n frames for message row `msg`: random bytes, valid switch values, some cut short."""
    size = int(m.msg_length[msg])
    lo, hi = int(m.msg_first[msg]), int(m.msg_first[msg + 1])
    children: dict[int, list[int]] = {}
    for s in range(lo, hi):
        p = int(m.sig_mux_parent[s])
        if p >= 0:
            children.setdefault(p, []).extend(m.mux_values[m.sig_mux_first[s] : m.sig_mux_first[s + 1]].tolist())
    frames, lengths = [], []
    for _ in range(n):
        frame = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        for switch in sorted(children):  # gating order: outer switches first
            value = int(rng.choice(children[switch]))
            write_raw(frame, int(m.sig_pos[switch]), int(m.sig_len[switch]), bool(m.sig_big_endian[switch]), value)
        cut = size if rng.random() >= TRUNCATED_SHARE or size == 0 else int(rng.integers(0, size))
        if cut == size and size < 64 and rng.random() < EXCESS_SHARE:
            frame += rng.integers(0, 256, int(rng.integers(1, 65 - size)), dtype=np.uint8).tobytes()
            cut = len(frame)
        frames.append(bytes(frame))
        lengths.append(cut)
    return frames, lengths


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _our_raw(m: Manifest, s: int, raw: int) -> int | float:
    if m.sig_float[s]:
        n = int(m.sig_len[s])
        return struct.unpack("<f" if n == 32 else "<d", (raw & ((1 << n) - 1)).to_bytes(n // 8, "little"))[0]
    return raw + (1 << 64) if raw < 0 and not m.sig_signed[s] else raw


def _raw_equal(ours: int | float, theirs: Any) -> bool:
    if isinstance(ours, float):
        return struct.pack("<d", ours) == struct.pack("<d", float(theirs)) or (
            math.isnan(ours) and math.isnan(float(theirs))
        )
    return ours == theirs


def _integer_problem(m: Manifest, s: int, exact: int, theirs: Any, report: Report) -> bool:
    """An integer signal's exact value must be the int cantools returns; cantools returns an int for
    no other signal but those whose results exceed int64 (there the raw value is exact)."""
    if m.sig_integer[s]:
        report.values_integer += type(theirs) is int and exact == theirs
        return not (type(theirs) is int and exact == theirs)
    report.integers_beyond_int64 += type(theirs) is int
    return exact != 0


def check_database(db: Any, name: str, frames_per_message: int, report: Report, rng: np.random.Generator) -> None:
    m = manifest_from_database([db])
    report.dbcs += 1
    report.messages += m.n_messages
    report.signals += m.n_signals
    report.multiplexed_messages += sum(1 for msg in db.messages if msg.is_multiplexed())
    qualified = m.qualified_names()
    for row in range(m.n_messages):
        frames, lengths = _frames_for(m, row, frames_per_message, rng)
        key = int(m.msg_key[row])
        keys = np.full(len(frames), key, dtype=np.uint32)
        data = np.frombuffer(b"".join(f[:n] for f, n in zip(frames, lengths, strict=True)), dtype=np.uint8)
        ours = decode_frames(m, keys, data, np.array(lengths))
        report.reference_mismatches += not _same_columns(
            ours, decode_frames_reference(m, keys, data, np.array(lengths))
        )
        rejected_before = report.cantools_rejected_frames
        message = db.get_message_by_frame_id(key & 0x7FFFFFFF, force_extended_id=bool(key >> 31))
        for f, (frame, n) in enumerate(zip(frames, lengths, strict=True)):
            report.frames += 1
            try:
                raw = message.decode(frame[:n], decode_choices=False, scaling=False, allow_truncated=True)
                scaled = message.decode(frame[:n], decode_choices=False, scaling=True, allow_truncated=True)
            except Exception as exc:
                report.cantools_rejected_frames += 1
                reason = f"{type(exc).__name__}: {str(exc)[:60]}"
                report.cantools_rejections[reason] = report.cantools_rejections.get(reason, 0) + 1
                continue
            mine = np.flatnonzero(ours.frame == f)
            got = {
                qualified[s].split(".", 1)[1]: (int(s), int(ours.raw[i]), float(ours.value[i]), int(ours.integer[i]))
                for i, s in zip(mine.tolist(), ours.signal[mine].tolist(), strict=True)
            }
            if any(m.sig_bytes[s] > m.msg_length[row] for s, *_ in got.values()):
                report.mismatches.append(f"{name} {message.name}: a signal beyond the declared length came out")
            if set(got) != set(raw):
                report.mismatches.append(
                    f"{name} {message.name} frame {frame[:n].hex()}: signals {sorted(set(got) ^ set(raw))}"
                )
                continue
            for sig, (s, r, v, exact) in got.items():
                report.values += 1
                if (
                    not _raw_equal(_our_raw(m, s, r), raw[sig])
                    or not _same(v, float(scaled[sig]))
                    or _integer_problem(m, s, exact, scaled[sig], report)
                ):
                    report.mismatches.append(
                        f"{name} {message.name}.{sig} frame {frame[:n].hex()}:"
                        f" ours {r}/{v}/{exact}, cantools {raw[sig]}/{scaled[sig]}"
                    )
                elif v == float(scaled[sig]) or (math.isnan(v) and math.isnan(float(scaled[sig]))):
                    report.values_exact += 1
        if report.cantools_rejected_frames - rejected_before == len(frames):
            report.messages_cantools_cannot_decode.append(f"{name}:{message.name}")


def _same_columns(a: SignalValues, b: SignalValues) -> bool:
    return all(
        np.array_equal(getattr(a, c), getattr(b, c), equal_nan=c == "value")
        for c in ("frame", "signal", "raw", "value", "known", "integer")
    )


def run(paths: list[Path], frames_per_message: int, seed: int = SEED) -> Report:
    import cantools

    report = Report()
    rng = np.random.default_rng(seed)
    for path in paths:
        name = str(path).split("opendbc/")[-1] if "opendbc/" in str(path) else path.name
        try:
            db = cantools.database.load_file(str(path), database_format="dbc", strict=False)
        except Exception as exc:
            report.unloadable[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            continue
        if not db.messages:
            report.empty.append(name)
            continue
        check_database(db, name, frames_per_message, report, rng)
    return report


def _main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="random frames per message")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run([*opendbc_files(), *opendbc_generated(Path(tmp))], args.frames)
    summary = {k: v for k, v in report.__dict__.items() if k != "mismatches"}
    summary["mismatch_count"] = len(report.mismatches)
    summary["mismatch_examples"] = report.mismatches[:10]
    summary["messages_compared"] = report.messages - len(report.messages_cantools_cannot_decode)
    summary["messages_cantools_cannot_decode"] = len(report.messages_cantools_cannot_decode)
    summary["messages_cantools_cannot_decode_examples"] = report.messages_cantools_cannot_decode[:5]
    print(json.dumps(summary, indent=None if args.json else 2))
    return 1 if report.mismatches or report.reference_mismatches else 0


if __name__ == "__main__":
    sys.exit(_main())
