"""What analyst queries and hostile HTTP clients cost a running gateway: a real broker, gateway and load.

Figures (one JSON object as the last line with --json):

- `ingest_msgs_per_s_quiet` / `_with_queries` / `ingest_ratio`: stored messages/s over `--window` s
  under a steady load, without and then with heavy GROUP BY queries running back to back on /api/sql;
- `group_array_rss_mb` / `_peak_mb` / `_rss_after_6s_mb`: the gateway's RSS before, its peak, and 6 s after the issue's
  `SELECT length(groupArray(number)) FROM numbers(400000000)` (refused at query_max_memory_bytes);
- `header_flood_*`: 8 connections sending 40,000 headers of 16 KB each: time to refusal, RSS after;
- `slowloris_*`: 3,000 half-open connections from a child process: worst and median probe latency,
  connections and files the gateway holds, seconds until it holds none (the client still holding all).

Usage: python benchmarks/bench_query_isolation.py [--window 8] [--rate 400] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.gateway.broker import Mosquitto, free_port
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.simulators.load import LoadSpec, run_load

HEAVY = b"SELECT count() FROM (SELECT number % 1000003 AS k, count() FROM numbers(300000000) GROUP BY k)"
GROUP_ARRAY = b"SELECT length(groupArray(number)) FROM numbers(400000000)"


def _vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def _post(url: str, body: bytes) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=120) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _stored(gw: GatewayProcess) -> float:
    for line in gw.get("/metrics")[1].decode().splitlines():
        if line.startswith("vehicle_ingest_messages_stored_total "):
            return float(line.split()[1])
    raise KeyError("vehicle_ingest_messages_stored_total")


def _rate(gw: GatewayProcess, seconds: float) -> float:
    first = _stored(gw)
    time.sleep(seconds)
    return (_stored(gw) - first) / seconds


def ingestion_under_queries(gw: GatewayProcess, rate: float, window: float) -> dict[str, float]:
    spec = LoadSpec(vehicles=int(rate * 5), rate=rate, hz=10, signals=10, duration_s=2 * window + 10, connections=2)
    load = threading.Thread(
        target=run_load, args=(spec, gw.mqtt_url, load_signal_catalog(), load_event_catalog(), None)
    )
    load.start()
    time.sleep(5)
    quiet = _rate(gw, window)
    stop, runs = threading.Event(), []

    def queries() -> None:
        while not stop.is_set():
            runs.append(_post(gw.url + "/api/sql", HEAVY))

    runner = threading.Thread(target=queries)
    runner.start()
    time.sleep(0.5)
    busy = _rate(gw, window)
    stop.set()
    runner.join()
    load.join()
    return {
        "ingest_msgs_per_s_quiet": round(quiet, 1),
        "ingest_msgs_per_s_with_queries": round(busy, 1),
        "ingest_ratio": round(busy / quiet, 4),
        "heavy_queries_run": len(runs),
        "samples_per_msg": spec.samples_per_message,
    }


def group_array(gw: GatewayProcess) -> dict[str, float]:
    pid = gw.process.pid
    before = _vm(pid, "VmRSS")
    status = _post(gw.url + "/api/sql", GROUP_ARRAY)
    peak = _vm(pid, "VmHWM")
    time.sleep(6)  # the gateway hands freed pages back every 5 s
    return {
        "group_array_status": status,
        "group_array_rss_mb": before,
        "group_array_peak_mb": peak,
        "group_array_rss_after_6s_mb": _vm(pid, "VmRSS"),
    }


def _flood_one(port: int) -> None:
    line = b"X-Flood: " + b"a" * 16_384 + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with contextlib.suppress(OSError):
            for _ in range(40_000):
                sock.sendall(line)
            sock.recv(4096)


def header_flood(gw: GatewayProcess) -> dict[str, float]:
    before = _vm(gw.process.pid, "VmRSS")
    threads = [threading.Thread(target=_flood_one, args=(gw.http_port,)) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "header_flood_s": round(time.monotonic() - started, 3),
        "header_flood_rss_mb": before,
        "header_flood_rss_after_mb": _vm(gw.process.pid, "VmRSS"),
    }


def _server_connections(port: int) -> int:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    return sum(1 for r in rows if int(r.split()[1].rsplit(":", 1)[1], 16) == port and r.split()[3] == "01")


def _slowloris(port: int, connections: int, ready: Any, done: Any) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    for _ in range(connections):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.5)
    for s in socks:
        with contextlib.suppress(OSError):
            s.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    ready.set()
    done.wait(120)


def _probe_ms(gw: GatewayProcess, path: str) -> float:
    started = time.monotonic()
    gw.get(path)
    return (time.monotonic() - started) * 1000


def slowloris(gw: GatewayProcess, idle_timeout_s: float) -> dict[str, float]:
    pid, port = gw.process.pid, gw.http_port
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, 1024))
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    flood = context.Process(target=_slowloris, args=(port, 3000, ready, done))
    flood.start()
    try:
        ready.wait(60)
        latencies = sorted(_probe_ms(gw, p) for p in ("/readyz", "/metrics", "/healthz") for _ in range(20))
        held, files = _server_connections(port), len(os.listdir(f"/proc/{pid}/fd"))
        # Connections the kernel let in late (SYN retries while the accept queue was full) arrive up to
        # ~30 s later and are held idle_timeout_s each: poll until the gateway holds none.
        started = time.monotonic()
        while _server_connections(port) and time.monotonic() - started < 90:
            time.sleep(0.5)
        after = time.monotonic() - started
    finally:
        done.set()
        flood.join(30)
    return {
        "slowloris_probe_max_ms": round(latencies[-1], 1),
        "slowloris_probe_median_ms": round(latencies[len(latencies) // 2], 1),
        "slowloris_connections_held": held,
        "slowloris_open_files": files,
        "slowloris_s_until_none_held": round(after, 1),
        "slowloris_held_at_end": _server_connections(port),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=8.0, help="seconds of each ingestion measurement")
    parser.add_argument("--rate", type=float, default=400.0, help="messages/s offered (500 samples each)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, Mosquitto.running(Path(tmp) / "broker") as broker:
        gw = GatewayProcess(broker.url, f"chdb://{tmp}/store", free_port(), Path(tmp) / "gateway.log")
        try:
            gw.wait_ready()
            figures |= ingestion_under_queries(gw, args.rate, args.window)
            figures |= header_flood(gw)
            figures |= slowloris(gw, 10.0)
            figures |= group_array(gw)
            figures["log_bytes"] = (Path(tmp) / "gateway.log").stat().st_size
        finally:
            gw.stop()
    if not args.json:
        for key, value in figures.items():
            print(f"{key:40} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
