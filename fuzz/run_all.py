"""Run every fuzz/fuzz_*.py harness for N executions and print one summary line each.

    python fuzz/run_all.py RUNS

A harness is any `fuzz/fuzz_<name>.py` taking libFuzzer flags (`-atheris_runs=N`);
its full log goes to `.fuzz/<name>.log`, a crashing input to `.fuzz/<name>/crashes/`.
Exit status 1 when any harness found something (a crash, a mismatch, a timeout).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".fuzz"
_DONE = re.compile(r"^Done (\d+) in (\d+) second", re.M)  # atheris' line when -atheris_runs ends the run
_COVERAGE = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")


def run_harness(harness: Path, runs: int) -> bool:
    """True when the harness ran all its executions without a finding."""
    name = harness.stem.removeprefix("fuzz_")
    crashes = OUT / name / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    log = OUT / f"{name}.log"
    cmd = [sys.executable, str(harness), f"-atheris_runs={runs}"]
    cmd.append(f"-artifact_prefix={crashes}/")
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False).returncode
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    done = _DONE.findall(text)
    executions = done[-1][0] if done else "?"
    coverage = _COVERAGE.findall(text)
    cov, ft, corpus = coverage[-1] if coverage else ("?", "?", "?")
    findings = sorted(p.name for p in crashes.iterdir())
    print(
        f"{harness.name}: executions={executions} time={elapsed:.0f}s"
        f" coverage={cov} features={ft} corpus={corpus} exit={code}"
        f" findings={len(findings)}{' ' + ', '.join(findings) if findings else ''} (log: {log.relative_to(ROOT)})"
    )
    return code == 0 and not findings


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    harnesses = sorted((ROOT / "fuzz").glob("fuzz_*.py"))
    if not harnesses:
        print("no fuzz/fuzz_*.py harness found")
        return 1
    results = [run_harness(h, runs) for h in harnesses]
    print(f"fuzz: {len(results)} harnesses, {results.count(False)} with findings")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
