"""End to end: load generator → mosquitto → gateway process → embedded store, at increasing offered loads.

For each offered load (samples/s = vehicles * hz * signals) a fresh broker,
gateway and chDB store are started on this machine, `vehicle-ingest load`
publishes for `--duration` seconds, and the gateway is then given time to
drain. Reported per load:

- stored samples/s while publishing (after a warm-up), from the gateway's
  own counter, and the whole-run rate including the drain;
- end-to-end lag p50/p99: newest sample of a message (stamped at publish) →
  its insert returned (queryable), from the gateway's histogram over the
  measured window, interpolated within buckets as Prometheus does;
- gateway CPU (cores used), peak RSS, RSS at the end; load generator and
  mosquitto CPU, because they share the 2 cores;
- loss and duplicates: the store (messages, samples, value checksum) against
  what the broker acknowledged to the generator. Must be 0 / 0.

A PNG plot of throughput and latency against offered load is written next
to the JSON (`--plot`).

Usage: python benchmarks/bench_pipeline.py [--loads 250000,500000,1000000] [--duration 30]
       [--plot benchmarks/pipeline.png] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from vehicle_ingest.gateway.broker import Mosquitto, free_port
from vehicle_ingest.gateway.demo import GatewayProcess

HZ, SIGNALS, PERIOD_S = 10.0, 10, 5.0
SAMPLES_PER_MESSAGE = int(HZ * SIGNALS * PERIOD_S)
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _rss_parts_mb(pid: int) -> tuple[float, float]:
    """(RssAnon, RssFile + RssShmem): heap the process wrote against pages mapped from files (chDB's
    library). Their sum is the process's RSS (the kernel's VmRSS)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kib = {k: int(v.split()[0]) for k, v in fields.items() if k in ("RssAnon", "RssFile", "RssShmem")}
    return kib["RssAnon"] / 1024, (kib["RssFile"] + kib["RssShmem"]) / 1024


def _family(pid: int) -> list[int]:
    """A process and its children (the workers of `--workers N`)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(c) for c in children)]


@dataclass
class _Sampler:
    """CPU and RSS of a process and its children, sampled in a thread."""

    pid: int
    interval: float = 0.5
    rss: list[tuple[float, float]] = field(default_factory=list)
    anon: list[float] = field(default_factory=list)
    mapped: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _cpu: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cpu0, self.t0 = self._cpu_total(), time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _cpu_total(self) -> float:
        for pid in _family(self.pid):
            with contextlib.suppress(OSError):  # exited between listing and reading: keep its last reading
                self._cpu[pid] = _cpu_seconds(pid)
        return sum(self._cpu.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                parts = [_rss_parts_mb(p) for p in _family(self.pid)]
                self.anon.append(sum(a for a, _ in parts))
                self.mapped.append(sum(m for _, m in parts))
                self.rss.append((time.monotonic() - self.t0, self.anon[-1] + self.mapped[-1]))
                self._cpu_total()
            except OSError:
                return

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        cpu = self._cpu_total() - self.cpu0
        elapsed = time.monotonic() - self.t0
        values = [r for _, r in self.rss] or [0.0]
        return {
            "cores": round(cpu / elapsed, 3),
            "rss_peak_mb": round(max(values), 1),
            "rss_end_mb": round(values[-1], 1),
            "rss_anon_peak_mb": round(max(self.anon, default=0.0), 1),
            "rss_file_peak_mb": round(max(self.mapped, default=0.0), 1),
        }


def _get(port: int, path: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read()


def _scrape(ports: list[int]) -> dict[str, Any]:
    """Samples stored and the lag histogram's cumulative buckets, summed over the workers."""
    out: dict[str, Any] = {"samples": 0.0, "receipts": 0.0, "receipt_bytes": 0.0, "buckets": {}}
    counters = {
        "vehicle_ingest_samples_stored_total": "samples",
        "vehicle_ingest_receipts_published_total": "receipts",
        "vehicle_ingest_receipt_bytes_total": "receipt_bytes",
    }
    for port in ports:
        for family in text_string_to_metric_families(_get(port, "/metrics").decode()):
            for s in family.samples:
                if s.name in counters:
                    out[counters[s.name]] += s.value
                elif s.name == "vehicle_ingest_end_to_end_lag_seconds_bucket":
                    le = float(s.labels["le"])
                    out["buckets"][le] = out["buckets"].get(le, 0.0) + s.value
    return out


def _stats(ports: list[int]) -> dict[str, float]:
    parts = [json.loads(_get(port, "/api/stats", timeout=900)) for port in ports]
    return {k: sum(p[k] for p in parts) for k in ("messages", "samples", "events", "value_sum")}


def _quantile(q: float, start: dict[float, float], end: dict[float, float]) -> float | None:
    """histogram_quantile over the bucket increase between two scrapes."""
    bounds = sorted(end)
    counts = [end[b] - start.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def _gateway_args(args: argparse.Namespace) -> list[str]:
    return [
        "--receive-max",
        str(args.receive_max),
        "--batch-max-messages",
        str(args.batch_max_messages),
        "--batch-linger-ms",
        str(args.linger_ms),
        "--tags-interval-s",
        "0",
        "--workers",
        str(args.workers),
        "--receipts",
        "true" if args.receipts else "false",
    ]


def _run_level(samples_per_s: int, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    vehicles = round(samples_per_s / (HZ * SIGNALS))
    rate = vehicles / PERIOD_S
    level = workdir / f"load-{samples_per_s}"
    level.mkdir()
    with Mosquitto.running(level / "broker") as broker:
        port = free_port()
        cage = (
            _MemoryCage(args.memory_limit_mb, f"vi-bench-{os.getpid()}-{samples_per_s}")
            if args.memory_limit_mb
            else None
        )
        with cage.spawning() if cage else contextlib.nullcontext():
            gw = GatewayProcess(broker.url, f"chdb://{level}/store", port, level / "gateway.log", *_gateway_args(args))
        try:
            ports = [port + k for k in range(args.workers)]
            for p in ports:
                _wait_ready(p, gw)
            result = _measure(gw, ports, broker, vehicles, rate, args, level)
            return {**result, **(cage.report() if cage else {})}
        finally:
            gw.stop()
            if cage:
                cage.remove()


class _MemoryCage:
    """A cgroup v1 memory controller group holding the gateway: a hard limit, as a container would set it.

    Page cache the gateway touches (chDB's library, the store's files) is charged too and reclaimed
    under the limit; anonymous memory cannot be, so a gateway that needs more is OOM-killed.
    """

    ROOT = Path("/sys/fs/cgroup/memory")

    def __init__(self, limit_mb: int, name: str) -> None:
        if not (self.ROOT / "cgroup.procs").exists():
            raise SystemExit("--memory-limit-mb needs a writable cgroup v1 memory controller at /sys/fs/cgroup/memory")
        self.path = self.ROOT / name
        self.path.mkdir()
        (self.path / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """Processes started inside this block are born in the group (charges do not move with a process)."""
        home = next(
            line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in line
        )
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        try:
            yield
        finally:
            (self.ROOT / home.lstrip("/") / "cgroup.procs").write_text(str(os.getpid()))

    def report(self) -> dict[str, object]:
        oom = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return {
            "memory_limit_mb": int((self.path / "memory.limit_in_bytes").read_text()) // 2**20,
            "memory_max_usage_mb": int((self.path / "memory.max_usage_in_bytes").read_text()) // 2**20,
            "memory_limit_hits": int((self.path / "memory.failcnt").read_text()),
            "oom_kills": int(oom.get("oom_kill", 0)),
        }

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _wait_ready(port: int, gw: GatewayProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gw.process.poll() is not None:
            raise RuntimeError(f"gateway exited with {gw.process.returncode}")
        try:
            _get(port, "/readyz")
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"gateway on port {port} not ready")


def _load_command(broker: Mosquitto, vehicles: int, rate: float, args: argparse.Namespace, truth: Path) -> list[str]:
    return [
        sys.executable, "-m", "vehicle_ingest.gateway.cli", "load", "--quiet", "--mqtt-url", broker.url,
        "--vehicles", str(vehicles), "--rate", str(rate), "--hz", str(HZ), "--signals", str(SIGNALS),
        "--duration", str(args.duration), "--connections", str(args.connections), "--truth", str(truth),
        *(["--per-vehicle"] if args.per_vehicle else []),
        "--receipts" if args.receipts else "--no-receipts",
    ]  # fmt: skip


def _measure(
    gw: GatewayProcess,
    ports: list[int],
    broker: Mosquitto,
    vehicles: int,
    rate: float,
    args: argparse.Namespace,
    level: Path,
) -> dict[str, object]:
    truth_path = level / "truth.json"
    gateway_usage = _Sampler(gw.process.pid)
    broker_usage = _Sampler(broker.process.pid)  # type: ignore[union-attr]
    children_before, load_started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    load = subprocess.Popen(_load_command(broker, vehicles, rate, args, truth_path))
    time.sleep(min(args.warmup, args.duration / 3))
    profiler = _start_profiler(_family(gw.process.pid)[-1], args, level) if args.profile else None
    first, t_first = _scrape(ports), time.monotonic()
    last, t_last = first, t_first
    while load.poll() is None:
        last, t_last = _scrape(ports), time.monotonic()
        time.sleep(0.5)
    # The load generator is the only child reaped in this window (the profiler is reaped after it).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_cpu = {"cores": round((children.ru_utime + children.ru_stime - children_before.ru_utime
                                - children_before.ru_stime) / (time.monotonic() - load_started), 3)}  # fmt: skip
    if load.returncode != 0:
        raise RuntimeError(f"load generator exited with {load.returncode}")
    truth = json.loads(truth_path.read_text())
    drain_started = time.monotonic()
    final = _wait_drained(ports, truth["samples"], args.drain_timeout)
    drain_s = time.monotonic() - drain_started
    gateway = gateway_usage.stop()
    broker_cpu = broker_usage.stop()
    if profiler is not None:
        profiler.wait(timeout=120)
        Path(args.profile).write_text(profile_summary(level / "profile.txt", samples_per_s=vehicles * HZ * SIGNALS))
        shutil.copy(level / "profile.txt", Path(args.profile).with_suffix(".raw"))
    stats = _stats(ports)
    window = max(t_last - t_first, 1e-9)
    return {
        "offered_samples_per_s": round(vehicles * HZ * SIGNALS),
        "vehicles": vehicles,
        "offered_msgs_per_s": rate,
        "acked_samples_per_s": truth["acked_samples_per_s"],
        "stored_samples_per_s": round((last["samples"] - first["samples"]) / window),  # type: ignore[operator]
        # The figure that travels between machines: what one core of the gateway stores per second.
        "stored_samples_per_gateway_core_s": round(
            (last["samples"] - first["samples"]) / window / max(gateway["cores"], 1e-9)  # type: ignore[operator]
        ),
        "receipts": args.receipts,
        "receipts_per_s": round((last["receipts"] - first["receipts"]) / window, 1),  # type: ignore[operator]
        "receipt_bytes_per_s": round((last["receipt_bytes"] - first["receipt_bytes"]) / window),  # type: ignore[operator]
        "drain_s": round(drain_s, 2),
        "lag_p50_s": _round(_quantile(0.5, first["buckets"], final["buckets"])),  # type: ignore[arg-type]
        "lag_p99_s": _round(_quantile(0.99, first["buckets"], final["buckets"])),  # type: ignore[arg-type]
        "gateway_cores": gateway["cores"],
        "gateway_rss_peak_mb": gateway["rss_peak_mb"],
        "gateway_rss_end_mb": gateway["rss_end_mb"],
        "gateway_rss_anon_peak_mb": gateway["rss_anon_peak_mb"],
        "gateway_rss_file_peak_mb": gateway["rss_file_peak_mb"],
        "loadgen_cores": load_cpu["cores"],
        "mosquitto_cores": broker_cpu["cores"],
        "acked_messages": truth["messages"],
        "stored_messages": stats["messages"],
        "lost_messages": truth["messages"] - stats["messages"],
        "lost_samples": truth["samples"] - stats["samples"],
        "value_sum_matches": abs(stats["value_sum"] - truth["value_sum"]) <= 1e-9 * max(1.0, abs(truth["value_sum"])),
        "workers": args.workers,
        "connections": truth["connections"],
        # A message stored twice adds its samples twice: with every message found, equal sample
        # counts mean no duplicates; `duplicates` checks it per message in the store too.
        "extra_samples": stats["samples"] - truth["samples"],
        "duplicates": sum(_duplicates(p) for p in ports),
        "rss_series": gateway_usage.rss if args.keep_series or args.rss_plot else None,
    }


def _start_profiler(pid: int, args: argparse.Namespace, level: Path) -> subprocess.Popen[bytes]:
    """py-spy on the gateway for most of the publishing window, native frames included (chDB releases the GIL)."""
    seconds = max(5, int(args.duration - args.warmup - 2))
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50", "--native"]
    return subprocess.Popen([*command, "--format", "raw", "-o", str(level / "profile.txt")], stdout=subprocess.DEVNULL)


# Where a sample of the gateway was, by the innermost frame of ours (or the library) on its stack.
_STAGES = (
    ("store: insert signals (chDB: sort, compress, identity projection)", "insert_signals"),
    ("store: insert events", "insert_events"),
    ("store: insert aggregates (latest_signals, daily_activity)", "insert_aggregates"),
    ("store: identity lookup (by_message projection)", "stored_identities"),
    ("store: release freed memory", "release_memory"),
    ("decode (numba)", "vehicle_ingest/codec/"),
    ("validate", "vehicle_ingest/validate.py"),
    ("aggregates fold (numba)", "pipeline/_aggregates.py"),
    ("moments: evaluate, owners, outbox", "vehicle_ingest/moments/"),
    ("pipeline bookkeeping (identities, dead letters, metrics)", "vehicle_ingest/pipeline/"),
    ("receipts: book and publish", "receipt"),
    ("MQTT receive + PUBACK (connection thread)", "gateway/mqtt_"),
    ("asyncio loop: batching, hand-over, HTTP", "asyncio"),
)
_IDLE = ("select (", "epoll_wait (", "poll (", "pthread_cond_wait", "pthread_cond_timedwait", "sem_wait", "__futex")


def _waiting(frames: list[str]) -> bool:
    """Blocked on the GIL or a lock: an unnamed libc leaf outside chDB, or a condition wait."""
    leaf = frames[-1]
    unnamed_libc = leaf.startswith("0x") and "(libc.so.6)" in leaf and not any("_chdb" in f for f in frames)
    return unnamed_libc or any(f.startswith("Condition.wait") for f in frames[-3:])


def profile_summary(raw: Path, samples_per_s: float) -> str:
    """Samples per stage from py-spy's raw output, as a table: idle and GIL/lock waits apart from work."""
    busy: dict[str, int] = {}
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        if any(frames[-1].startswith(w) for w in _IDLE) or "_worker (concurrent/futures/thread.py:8" in frames[-1]:
            idle += n
            continue
        stage = next((name for name, key in _STAGES if key in stack), "other")
        if _waiting(frames) and not stage.startswith("store"):
            stage = "waiting for the GIL or a lock (MQTT thread, event loop)"
        busy[stage] = busy.get(stage, 0) + n
    lines = [f"py-spy, {total} samples at 50 Hz over all gateway threads, {idle} idle; offered {samples_per_s:,.0f} samples/s",
             f"{'stage':<80} {'samples':>8} {'share':>6}"]  # fmt: skip
    all_busy = max(sum(busy.values()), 1)
    for name, n in sorted(busy.items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<80} {n:>8} {n / all_busy:>6.0%}")
    return "\n".join(lines) + "\n"


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _wait_drained(ports: list[int], samples: int, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        scrape = _scrape(ports)
        if scrape["samples"] >= samples or time.monotonic() > deadline:  # type: ignore[operator]
            return scrape
        time.sleep(0.2)


def _duplicates(port: int) -> int:
    """Rows beyond a message's own samples, summed over messages (vin, seq): 0 when exactly once.

    Every load-generator message carries SAMPLES_PER_MESSAGE samples, so a copy stored twice shows
    as a (vin, seq) with more rows. Grouping by message keeps the check within the gateway's query
    memory limit at any run length (a DISTINCT over every row did not at 1 M samples/s for 30 s).
    """
    sql = (
        f"SELECT toInt64(sum(rows) - sum(least(rows, {SAMPLES_PER_MESSAGE}))) "
        "FROM (SELECT vin, seq, count() AS rows FROM signals GROUP BY vin, seq)"
    ).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/sql", data=sql, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            return int(json.loads(r.read())["rows"][0][0])
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"bench_pipeline: the duplicate check was refused: {exc.read().decode()[:300]}") from exc


def _plot(levels: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offered = [lv["offered_samples_per_s"] / 1e6 for lv in levels]  # type: ignore[operator]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(offered, offered, "--", color="grey", label="offered")
    ax1.plot(offered, [lv["stored_samples_per_s"] / 1e6 for lv in levels], "o-", label="stored")  # type: ignore[operator]
    ax1.set(xlabel="offered load (M samples/s)", ylabel="M samples/s", title="Throughput, one gateway process")
    ax1.legend()
    ax2.plot(offered, [lv["lag_p50_s"] for lv in levels], "o-", label="p50")
    ax2.plot(offered, [lv["lag_p99_s"] for lv in levels], "s-", label="p99")
    ax2.axhline(1.5, color="red", lw=0.8, ls=":", label="p99 goal at half load")
    ax2.set(xlabel="offered load (M samples/s)", ylabel="seconds", title="Publish → queryable lag")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle("vehicle-ingest: load generator + mosquitto + gateway + chDB on one 2-core machine", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_rss(levels: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for lv in levels:
        series = lv["rss_series"] or []
        ax.plot(
            [t / 60 for t, _ in series],
            [r for _, r in series],
            label=f"{lv['offered_samples_per_s']:,} samples/s offered",
        )  # type: ignore[union-attr,index]
    ax.axhline(600, color="red", lw=0.8, ls=":", label="goal 600 MB (issue 15)")
    ax.set(xlabel="minutes", ylabel="gateway RSS (MB)", title="Gateway memory under sustained load", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--loads", default="250000,500000,750000,1000000,1250000", help="offered samples/s, comma-separated"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing per load")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--per-vehicle", action="store_true", help="one MQTT connection per vehicle")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes on one shared subscription")
    parser.add_argument("--receive-max", type=int, default=4000)
    parser.add_argument(
        "--receipts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gateway receipts on, and the load generator waiting for them as head units do (default: on)",
    )
    parser.add_argument("--batch-max-messages", type=int, default=2000)
    parser.add_argument("--linger-ms", type=int, default=200)
    parser.add_argument("--plot", default=None, help="write a PNG of throughput and lag against offered load")
    parser.add_argument("--keep-series", action="store_true", help="include the gateway RSS time series")
    parser.add_argument("--rss-plot", default=None, help="write a PNG of gateway RSS over time (one per load)")
    parser.add_argument("--profile", default=None, help="py-spy the gateway under load; write the per-stage table here")
    parser.add_argument(
        "--memory-limit-mb", type=int, default=0, help="run the gateway in a memory cgroup with this hard limit"
    )
    parser.add_argument("--keep", default=None, help="run in this (new) folder and keep it: gateway logs, stores")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    levels = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            Path(args.keep).mkdir(parents=True)
        tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="vi-bench-pipeline-"))
        for load in [int(x) for x in args.loads.split(",")]:
            result = _run_level(load, args, Path(tmp))
            levels.append(result)
            shown = {k: v for k, v in result.items() if k != "rss_series"}
            print(json.dumps(shown), file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.plot:
        _plot(levels, Path(args.plot))
    if args.rss_plot:
        _plot_rss(levels, Path(args.rss_plot))
    for lv in levels:
        lv.pop("rss_series", None)
    summary = {
        "levels": levels,
        "max_stored_samples_per_s": max(lv["stored_samples_per_s"] for lv in levels),  # type: ignore[type-var]
        "lost_messages": sum(lv["lost_messages"] for lv in levels),  # type: ignore[misc]
        "duplicates": sum(lv["duplicates"] or 0 for lv in levels),  # type: ignore[misc]
        "extra_samples": sum(lv["extra_samples"] for lv in levels),  # type: ignore[misc]
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
