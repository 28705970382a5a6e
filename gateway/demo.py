"""`vehicle-ingest demo`: a broker, the gateway on the embedded store, a simulated fleet, a summary."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.gateway.broker import Mosquitto, free_port

__all__ = ["GatewayProcess", "run_demo"]

_PER_SIGNAL_SQL = (
    "SELECT signal_id, count() AS samples, round(min(value), 2), round(avg(value), 2), round(max(value), 2)"
    " FROM signals GROUP BY signal_id ORDER BY signal_id"
)


class GatewayProcess:
    """`vehicle-ingest gateway` as a child process, as operators run it."""

    def __init__(self, mqtt_url: str, store: str, http_port: int, log_path: Path, *extra: str) -> None:
        self.mqtt_url = mqtt_url
        self.log_path = log_path
        self._args = (store, extra)
        self._log = log_path.open("ab")
        self._port_retries = 3
        self._spawn(http_port)

    def _spawn(self, http_port: int) -> None:
        store, extra = self._args
        self.http_port = http_port
        self.url = f"http://127.0.0.1:{http_port}"
        cmd = [
            sys.executable,
            "-m",
            "vehicle_ingest.gateway.cli",
            "gateway",
            "--mqtt-url",
            self.mqtt_url,
            "--store",
            store,
            "--http-port",
            str(http_port),
            *extra,
        ]
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                if "cannot listen on" in tail and self._port_retries:
                    # The free port we picked was taken meanwhile (another process's free_port()): pick again.
                    self._port_retries -= 1
                    self._spawn(free_port())
                    continue
                raise RuntimeError(f"gateway exited with {self.process.returncode}: {tail}")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        """The gateway's last log lines, so a failed start says why."""
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=300) as r:
            answer: dict[str, Any] = json.loads(r.read())
        return answer

    def sql(self, query: str) -> list[list[Any]]:
        request = urllib.request.Request(self.url + "/api/sql", data=query.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as r:
            rows: list[list[Any]] = json.loads(r.read())["rows"]
        return rows

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads(self.get("/api/stats")[1])
        return stats

    def wait_stored(self, messages: int, timeout: float = 120.0) -> dict[str, Any]:
        """Poll until the store holds `messages` messages (stored + rejected)."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while stats["messages"] + stats["rejected"] < messages and time.monotonic() < deadline:
            time.sleep(0.25)
            stats = self.stats()
        return stats

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._log.close()


def _simulate(mqtt_url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    flags = {
        "--vehicles": args.vehicles,
        "--duration": args.duration,
        "--sample-hz": args.sample_hz,
        "--message-s": args.message_s,
        "--truth": workdir / "truth.json",
        "--owners": workdir / "owners.csv",
    }
    cmd = [sys.executable, "-m", "vehicle_ingest.gateway.cli", "simulate", "--mqtt-url", mqtt_url]
    cmd += [str(x) for pair in flags.items() for x in pair]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    truth: dict[str, Any] = json.loads((workdir / "truth.json").read_text())
    return truth


def run_demo(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    changes_file = workdir / "cdp" / "changes.jsonl"
    with Mosquitto.running(workdir / "broker") as broker:
        print(f"broker    mosquitto on {broker.url}")
        gw = GatewayProcess(
            broker.url,
            f"chdb://{workdir / 'store'}",
            free_port(),
            workdir / "gateway.log",
            "--tags-interval-s",
            "0",
            "--cdp-urls",
            f"file://{changes_file}",
            "--deliver-interval-s",
            "1",
        )
        try:
            gw.wait_ready()
            print(f"gateway   {gw.url}  (/metrics /healthz /readyz), store chdb://{workdir / 'store'}")
            print(f"fleet     {args.vehicles} vehicles, {args.duration / 86400:.0f} simulated days ...", flush=True)
            truth = _simulate(broker.url, args, workdir)
            gw.post("/api/owners", (workdir / "owners.csv").read_bytes())
            stats = gw.wait_stored(truth["messages"])
            as_of = json.dumps({"as_of_ms": truth["as_of_ms"]}).encode()  # the truth's windows
            report = gw.post("/api/tags/run", as_of)
            tags = gw.post("/api/tags/show", as_of)
            trips = gw.sql(
                "SELECT vin, toUnixTimestamp64Milli(trip_start), distance_km FROM trips FINAL WHERE is_deleted = 0"
            )
            per_signal = gw.sql(_PER_SIGNAL_SQL)
            delivered = _wait_lines(changes_file, report["tags"]["changes"])
        finally:
            code = gw.stop()
    exact = _summary(truth, stats, code)
    _print_signals(per_signal)
    quality = _print_tags(truth, tags, trips, delivered, changes_file)
    print(f"\ndone in {time.monotonic() - started:.1f}s; the store, logs and truth are in {workdir}")
    return 0 if exact and quality and code == 0 else 1


def _wait_lines(path: Path, expected: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = len(path.read_text().splitlines()) if path.exists() else 0
        if count >= expected:
            break
        time.sleep(0.25)
    return count


def _summary(truth: dict[str, Any], stats: dict[str, Any], gateway_exit: int) -> bool:
    rate = truth["samples"] / max(truth["seconds"], 1e-9)
    print(
        f"published {truth['messages']:,} messages, {truth['samples']:,} samples, {truth['events']:,} events "
        f"({truth['bytes'] / max(truth['samples'], 1):.2f} wire bytes/sample, {rate:,.0f} samples/s)"
    )
    print(
        f"stored    {stats['messages']:,} messages, {stats['samples']:,} samples, {stats['events']:,} events, "
        f"{stats['rejected']} rejected, {stats['vehicles']} vehicles"
    )
    exact = all(stats[k] == truth[k] for k in ("messages", "samples", "events"))
    print(f"check     store == receipted truth: {'yes' if exact else 'NO'}; gateway exit code {gateway_exit}")
    return exact


def _print_signals(per_signal: list[list[Any]]) -> None:
    catalog = load_signal_catalog()
    print("\nper signal, from the store:")
    print(f"  {'id':>4}  {'signal':<56} {'samples':>9} {'min':>12} {'avg':>12} {'max':>12}")
    for sid, n, low, avg, high in per_signal:
        print(f"  {sid:>4}  {catalog.by_id(sid).path:<56} {n:>9,} {low:>12} {avg:>12} {high:>12}")


def _print_tags(
    truth: dict[str, Any], tags: dict[str, Any], trips: list[list[Any]], delivered: int, changes_file: Path
) -> bool:
    want = {(o, t) for o, v in truth["owners"].items() for t in v["tags"]}
    got = {(o, t) for o, ts in tags.items() for t in ts}
    precision = len(got & want) / max(len(got), 1)
    recall = len(got & want) / max(len(want), 1)
    expected = {(vin, t["start_ms"]): t["km"] for vin, ts in truth["trips"].items() for t in ts}
    stored = {(vin, start): km for vin, start, km in trips}
    within = sum(1 for k, km in expected.items() if k in stored and abs(stored[k] - km) <= max(0.01 * km, 0.002))
    print(f"\ntrips     {len(stored):,} found, {len(expected):,} simulated, {within:,} within 1 % of the true distance")
    print(f"tags      {len(got):,} owner tags on {len(tags)} owners; precision {precision:.3f}, recall {recall:.3f}")
    counts: dict[str, int] = {}
    for _, t in got:
        counts[t] = counts.get(t, 0) + 1
    for tag, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:20]:
        print(f"  {n:>5}  {tag}")
    print(f"cdp       {delivered:,} changes delivered to {changes_file}")
    return precision == recall == 1.0 and within == len(expected) == len(stored)
