"""The package as a user gets it: build the wheel, install it alone in a fresh venv, run it from elsewhere.

`make wheel-check` (part of `make test`) runs `python -m tests.wheel_check`. It fails, with one line
naming what is wrong, when the wheel installs a top-level name other than vehicle_ingest, misses a
data file of schemas/ that the code reads, or when `vehicle-ingest demo` does not run from a folder
outside the repository.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_SUFFIXES = {".csv", ".toml", ".sql", ".dbc", ".hex", ".md"}


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _fail(what: str, result: subprocess.CompletedProcess[str] | None = None) -> None:
    detail = f"\n{result.stdout[-2000:]}{result.stderr[-2000:]}" if result is not None else ""
    sys.exit(f"wheel check: {what}{detail}")


def build(out: Path) -> Path:
    result = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)], ROOT)
    if result.returncode != 0:
        _fail("the wheel does not build", result)
    return next(out.glob("vehicle_ingest-*.whl"))


def check_contents(wheel: Path) -> int:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    strays = sorted(t for t in top if t != "vehicle_ingest" and not t.endswith(".dist-info"))
    if strays:
        _fail(f"installs top-level names outside vehicle_ingest: {strays}")
    wanted = {
        f"vehicle_ingest/schemas/{p.relative_to(ROOT / 'schemas')}"
        for p in (ROOT / "schemas").rglob("*")
        if p.suffix in DATA_SUFFIXES
    }
    missing = sorted(wanted - set(names))
    if missing or "vehicle_ingest/py.typed" not in names:
        _fail(f"the wheel lacks {missing or ['vehicle_ingest/py.typed']}")
    return len(wanted)


def install(wheel: Path, venv: Path) -> Path:
    for cmd in ([sys.executable, "-m", "venv", str(venv)], [str(venv / "bin" / "pip"), "install", "-q", str(wheel)]):
        result = _run(cmd, venv.parent, timeout=900)
        if result.returncode != 0:
            _fail(f"{' '.join(cmd[:3])} failed", result)
    return venv / "bin"


def run_from_elsewhere(bin_dir: Path, folder: Path) -> float:
    probe = _run([str(bin_dir / "python"), "-c", "import gateway"], folder)
    if probe.returncode == 0:
        _fail("`import gateway` works in the fresh venv: a top-level package leaked")
    started = time.monotonic()
    demo = [str(bin_dir / "vehicle-ingest"), "demo", "--vehicles", "5", "--duration", "172800", "--workdir", "demo"]
    result = _run(demo, folder)
    if result.returncode != 0 or "truth: yes" not in result.stdout:
        _fail(f"`vehicle-ingest demo` from {folder} failed (exit {result.returncode})", result)
    return time.monotonic() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vi-wheel-") as tmp:
        base = Path(tmp)
        wheel = build(base / "dist")
        files = check_contents(wheel)
        bin_dir = install(wheel, base / "venv")
        (base / "elsewhere").mkdir()
        seconds = run_from_elsewhere(bin_dir, base / "elsewhere")
        print(
            f"wheel check: {wheel.name} installs vehicle_ingest only, with py.typed and {files} schema files;"
            f" `vehicle-ingest demo` ran from {base / 'elsewhere'} in {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
