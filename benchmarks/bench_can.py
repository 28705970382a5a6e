"""CAN signal decoding: the numba batch decoder against cantools `decode_message`, same frames, same DBC.

    python benchmarks/bench_can.py [--frames 200000] [--batch 10000] [--cantools-frames 20000] [--repeat 5]
                                   [--dbc NAME,...] [--json]

Frames are random bytes (fixed seed) that cantools decodes, for every message of
the DBC cantools can decode (a random multiplexer value it does not know is
redrawn), at the DBC length; ids are drawn uniformly over those messages.
numba: `decode_frames` over all frames in calls of `--batch` frames (a gateway
batch; one call per batch, from frame columns to output columns). cantools:
`db.decode_message(id, data, decode_choices=False)` per frame over the first
`--cantools-frames` frames. The two are timed in alternating rounds, best of
`--repeat` each, single threaded, so a busy machine slows both alike. Rates are
frames/s and decoded signal values/s; `ratio` is numba frames/s over cantools'.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from vehicle_ingest.can import decode_frames
from vehicle_ingest.can.manifest import manifest_from_database

SEED = 7


def opendbc_files() -> list[Path]:
    import opendbc

    return sorted(Path(opendbc.__file__).parent.rglob("*.dbc"))


def opendbc_generated(name: str, folder: Path) -> Path:
    """One of the DBCs opendbc's generator assembles (e.g. `hyundai_canfd_generated.dbc`), written to `folder`.

    The package ships only the generator's templates (with their IMPORT lines): the
    DBC a car uses exists once the generator has joined them.
    """
    from opendbc.dbc.generator.generator import generate_all

    path = folder / name
    path.write_text(generate_all()[name.removesuffix(".dbc")])
    return path


def _pool(msg, rng: np.random.Generator, size: int = 64) -> list[bytes]:
    """Random full-length frames cantools decodes (a random multiplexer value may be undefined: redraw)."""
    out: list[bytes] = []
    for _ in range(size * 20):
        frame = rng.integers(0, 256, msg.length, dtype=np.uint8).tobytes()
        try:
            msg.decode(frame, decode_choices=False)
        except Exception:
            continue
        out.append(frame)
        if len(out) == size:
            break
    return out


def _frames(db, m, n: int, rng: np.random.Generator):
    pool = {}
    for row in range(m.n_messages):
        key = int(m.msg_key[row])
        frames = _pool(db.get_message_by_frame_id(key & 0x7FFFFFFF, force_extended_id=bool(key >> 31)), rng)
        if len(frames) == 64:  # else cantools cannot decode the message (overlapping signals)
            pool[row] = frames
    rows = sorted(pool)
    pick = rng.choice(rows, n)
    frames = [pool[r][int(k)] for r, k in zip(pick.tolist(), rng.integers(0, 64, n).tolist(), strict=True)]
    keys = m.msg_key[pick]
    return keys, frames, len(rows)


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(dbc: Path, n: int, n_ct: int, repeat: int, batch: int) -> dict:
    import cantools

    db = cantools.database.load_file(str(dbc), database_format="dbc", strict=False)
    m = manifest_from_database([db])
    keys, frames, n_messages = _frames(db, m, n, np.random.default_rng(SEED))
    data = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lengths = np.array([len(f) for f in frames])
    out = decode_frames(m, keys, data, lengths)  # warm-up (and JIT compile)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    cuts = [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]
    batches = [(keys[a:b], data[starts[a] : starts[b]], lengths[a:b]) for a, b in cuts]
    ids = [int(k) & 0x7FFFFFFF for k in keys[:n_ct].tolist()]
    sample = frames[:n_ct]

    def run_numba() -> None:
        for k, d, ln in batches:
            decode_frames(m, k, d, ln)

    def run_cantools() -> int:
        return sum(len(db.decode_message(i, f, decode_choices=False)) for i, f in zip(ids, sample, strict=True))

    ct_values = run_cantools()
    numba_s, ct_s = float("inf"), float("inf")
    for _ in range(repeat):
        numba_s = min(numba_s, _best(run_numba, 1))
        ct_s = min(ct_s, _best(run_cantools, 1))
    ours_in_sample = int((out.frame < n_ct).sum())
    assert ours_in_sample == ct_values, f"decoded {ours_in_sample} values, cantools {ct_values}"
    numba_fps, ct_fps = n / numba_s, n_ct / ct_s
    return {
        "dbc": dbc.name,
        "messages": n_messages,
        "frames": n,
        "batch": batch,
        "values": len(out),
        "numba_frames_per_s": round(numba_fps),
        "numba_values_per_s": round(len(out) / numba_s),
        "cantools_frames": n_ct,
        "cantools_frames_per_s": round(ct_fps),
        "cantools_us_per_frame": round(1e6 / ct_fps, 2),
        "ratio": round(numba_fps / ct_fps, 1),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000, help="frames per decode_frames call")
    parser.add_argument("--cantools-frames", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--dbc",
        default="toyota_tss2_adas.dbc,vw_mqb.dbc,vi_sim_powertrain.dbc,hyundai_canfd_generated.dbc",
        help="comma-separated DBC file names (opendbc's, its generator's *_generated.dbc, or ours in schemas/can)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    ours = Path(__file__).resolve().parents[1] / "schemas" / "can"
    known = {p.name: p for p in [*opendbc_files(), *ours.glob("*.dbc")]}
    names = args.dbc.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [known.get(n) or opendbc_generated(n, Path(tmp)) for n in names]
        results = [bench(path, args.frames, args.cantools_frames, args.repeat, args.batch) for path in paths]
    summary = {"runs": results, "min_ratio": min(r["ratio"] for r in results)}
    if args.json:
        print(json.dumps(summary))
        return
    print("| DBC | messages | numba frames/s | numba values/s | cantools frames/s (µs/frame) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['dbc']} | {r['messages']} | {r['numba_frames_per_s']:,} | {r['numba_values_per_s']:,} |"
            f" {r['cantools_frames_per_s']:,} ({r['cantools_us_per_frame']}) | {r['ratio']}x |"
        )


if __name__ == "__main__":
    main()
