"""`vehicle-ingest demo`: a broker, the gateway on the embedded store, a simulated fleet, a summary."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gateway.broker import Mosquitto, free_port
from vehicle_ingest.catalog import load_signal_catalog

__all__ = ["GatewayProcess", "run_demo"]

_PER_SIGNAL_SQL = (
    "SELECT signal_id, count() AS samples, round(min(value), 2), round(avg(value), 2), round(max(value), 2)"
    " FROM signals GROUP BY signal_id ORDER BY signal_id"
)


class GatewayProcess:
    """`vehicle-ingest gateway` as a child process, as operators run it."""

    def __init__(self, mqtt_url: str, store: str, http_port: int, log_path: Path, *extra: str) -> None:
        self.http_port = http_port
        self.url = f"http://127.0.0.1:{http_port}"
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "gateway",
            "--mqtt-url",
            mqtt_url,
            "--store",
            store,
            "--http-port",
            str(http_port),
            *extra,
        ]
        self._log = log_path.open("ab")
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
                raise RuntimeError(f"gateway exited with {self.process.returncode}")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("gateway not ready")

    def sql(self, query: str) -> list[list]:
        request = urllib.request.Request(self.url + "/api/sql", data=query.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read())["rows"]

    def stats(self) -> dict:
        return json.loads(self.get("/api/stats")[1])

    def wait_stored(self, messages: int, timeout: float = 120.0) -> dict:
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


def _simulate(mqtt_url: str, args: argparse.Namespace, truth: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "gateway.cli",
        "simulate",
        "--mqtt-url",
        mqtt_url,
        "--vehicles",
        str(args.vehicles),
        "--duration",
        str(args.duration),
        "--sample-hz",
        str(args.sample_hz),
        "--truth",
        str(truth),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(truth.read_text())


def run_demo(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    with Mosquitto.running(workdir / "broker") as broker:
        print(f"broker   mosquitto on {broker.url}")
        gw = GatewayProcess(broker.url, f"chdb://{workdir / 'store'}", free_port(), workdir / "gateway.log")
        try:
            gw.wait_ready()
            print(f"gateway  {gw.url}  (/metrics /healthz /readyz), store chdb://{workdir / 'store'}")
            print(f"fleet    {args.vehicles} vehicles, {args.duration / 3600:.1f} simulated hours ...", flush=True)
            truth = _simulate(broker.url, args, workdir / "truth.json")
            stats = gw.wait_stored(truth["messages"])
            per_signal = gw.sql(_PER_SIGNAL_SQL)
        finally:
            code = gw.stop()
    _summary(truth, stats, time.monotonic() - started, code)
    catalog = load_signal_catalog()
    print("\nper signal, from the store:")
    print(f"  {'id':>4}  {'signal':<52} {'samples':>9} {'min':>12} {'avg':>12} {'max':>12}")
    for sid, n, low, avg, high in per_signal:
        print(f"  {sid:>4}  {catalog.by_id(sid).path:<52} {n:>9,} {low:>12} {avg:>12} {high:>12}")
    return 0 if stats["messages"] == truth["messages"] and code == 0 else 1


def _summary(truth: dict, stats: dict, seconds: float, gateway_exit: int) -> None:
    rate = truth["samples"] / max(truth["seconds"], 1e-9)
    print(
        f"published {truth['messages']:,} messages, {truth['samples']:,} samples, {truth['events']:,} events "
        f"({truth['bytes'] / max(truth['samples'], 1):.2f} wire bytes/sample, {rate:,.0f} samples/s)"
    )
    print(
        f"stored    {stats['messages']:,} messages, {stats['samples']:,} samples, {stats['events']:,} events, "
        f"{stats['rejected']} rejected, {stats['vehicles']} vehicles"
    )
    exact = stats["messages"] == truth["messages"] and stats["samples"] == truth["samples"]
    print(
        f"check     store == broker-acknowledged truth: {'yes' if exact else 'NO'}; "
        f"gateway exit code {gateway_exit}; {seconds:.1f}s in all"
    )
    print(
        "try       .venv/bin/vehicle-ingest sql --store chdb://"
        + os.path.join(".vi-demo", "store")
        + ' "SELECT reason, count() FROM dead_letters GROUP BY reason"'
    )
