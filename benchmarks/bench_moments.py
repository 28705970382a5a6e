"""Moments end to end: publish → broker → gateway → outbox → Segment-compatible receiver, under background load.

Runs twice on fresh brokers, gateways and chDB stores: moments off, then on. Each run carries
the same background load (`vehicle-ingest load`: VINs with no owner, so their voice-assistant
first uses are decided and dropped, and their state is rebuilt from the store on first sight);
the "on" run also publishes `--moments` trigger messages, one per owned vehicle (12 V battery
12.5 V → 11.5 V), spread over the middle of the load, each at a known publish time. A local HTTP
server speaking Segment's /v1/batch records when each track arrives.

Prints one JSON object last: moments received, p50_s / p99_s (publish → received), lost,
duplicates, background_samples_per_s (offered), and the gateway's stored samples/s with moments
off and on over the same window of the load. deliver_p50_s / deliver_p99_s split off the delivery
part: outbox write (tag_history.enqueued_at, the store's clock, this machine's) → received. What
is left of p50_s is ingestion's: the broker, batching, the insert and the evaluation.

Usage: python benchmarks/bench_moments.py [--moments 120] [--samples-per-s 500000] [--duration 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from prometheus_client.parser import text_string_to_metric_families

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.cdp import moment_message_id
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.gateway.broker import Mosquitto, free_port
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.mqtt_url import parse_mqtt_url

HZ, SIGNALS, PERIOD_S = 10.0, 10, 5.0
MOMENT = "moment.battery_12v_low"
BATTERY = load_signal_catalog().by_path("Vehicle.LowVoltageBattery.CurrentVoltage")


class _Arrivals:
    """A Segment-compatible receiver: 200 to every /v1/batch, the first arrival time of each track."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.count: Counter[str] = Counter()
        self.lock = threading.Lock()

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                now = time.time()
                with arrivals.lock:
                    for m in body["batch"]:
                        if m["type"] == "track":
                            arrivals.first.setdefault(m["messageId"], now)
                            arrivals.count[m["messageId"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        return httpd, f"127.0.0.1:{httpd.server_address[1]}"


def _vins(n: int) -> list[str]:
    return [f"SMXBENCH{k:09d}" for k in range(n)]


def _trigger(vin: str) -> bytes:
    now = time.time_ns() // 1_000_000
    ts = np.array([now - 1000, now], dtype=np.int64)
    return encode_signals(vin, 1, now - 1000, [SignalBlock(BATTERY.id, BATTERY.scale_exp, ts, np.array([1250, 1150]))])


def _publish_triggers(url: str, vins: list[str], start: float, spread_s: float) -> dict[str, float]:
    """Publish one trigger per VIN, evenly over `spread_s` from `start`; returns each publish time."""
    host, port, _ = parse_mqtt_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-moments", protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    sent: dict[str, float] = {}
    try:
        for k, vin in enumerate(vins):
            time.sleep(max(0.0, start + k * spread_s / len(vins) - time.monotonic()))
            payload = _trigger(vin)
            sent[vin] = time.time()
            client.publish(f"vi/v1/{vin}/signals", payload, qos=1).wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


def _stored_samples(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        for family in text_string_to_metric_families(r.read().decode()):
            for s in family.samples:
                if s.name == "vehicle_ingest_samples_stored_total":
                    return s.value
    return 0.0


def _run(args: argparse.Namespace, work: Path, moments_on: bool) -> dict[str, Any]:
    work.mkdir(parents=True)
    vehicles = round(args.samples_per_s / (HZ * SIGNALS))
    arrivals = _Arrivals()
    httpd, address = arrivals.serve()
    with Mosquitto.running(work / "broker") as broker:
        port = free_port()
        flags = ["--tags-interval-s", "0", "--moments", "true" if moments_on else "false", "--receipts", "false"]
        flags += ["--cdp-urls", f"segment+http://key@{address}", "--deliver-interval-s", "5"]
        gw = GatewayProcess(broker.url, f"chdb://{work}/store", port, work / "gateway.log", *flags)
        try:
            gw.wait_ready(120)
            owners = "vin,owner_id,valid_from,drivers\n" + "".join(
                f"{v},owner-{v[-6:]},2020-01-01,\n" for v in _vins(args.moments)
            )
            gw.post("/api/owners", owners.encode())
            load = subprocess.Popen(
                [sys.executable, "-m", "vehicle_ingest.gateway.cli", "load", "--quiet", "--mqtt-url", broker.url,
                 "--vehicles", str(vehicles), "--rate", str(vehicles / PERIOD_S), "--hz", str(HZ),
                 "--signals", str(SIGNALS), "--duration", str(args.duration), "--no-receipts",
                 "--truth", str(work / "truth.json")],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            warm = args.duration / 4
            time.sleep(warm)
            first, t_first = _stored_samples(port), time.monotonic()
            sent = {}
            if moments_on:
                sent = _publish_triggers(broker.url, _vins(args.moments), time.monotonic(), args.duration / 2)
            time.sleep(max(0.0, t_first + args.duration / 2 - time.monotonic()))
            last, t_last = _stored_samples(port), time.monotonic()
            if load.wait(args.duration + 120) != 0:
                raise RuntimeError(f"load generator exited with {load.returncode}")
            deadline = time.monotonic() + 60
            while len(arrivals.first) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)  # a duplicate delivery would arrive by now
            truth = json.loads((work / "truth.json").read_text())
            enqueued = _enqueued(gw) if moments_on else {}
        finally:
            gw.stop()
            httpd.shutdown()
            httpd.server_close()
    ids = {moment_message_id(f"owner-{v[-6:]}", MOMENT, v, 1): t for v, t in sent.items()}
    latencies = sorted(arrivals.first[i] - t for i, t in ids.items() if i in arrivals.first)
    delivery = sorted(arrivals.first[i] - t for i, t in enqueued.items() if i in ids and i in arrivals.first)
    return {
        "stored_samples_per_s": round((last - first) / (t_last - t_first)),
        "offered_samples_per_s": round(vehicles * HZ * SIGNALS),
        "acked_samples_per_s": truth.get("acked_samples_per_s"),
        "moments": len(latencies),
        "expected": len(ids),
        "lost": len(ids) - len(latencies),
        "duplicates": sum(n - 1 for i, n in arrivals.count.items() if i in ids),
        "unexpected": sorted(set(arrivals.first) - set(ids))[:5],
        "p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "p99_s": round(float(np.percentile(latencies, 99)), 3) if latencies else None,
        "max_s": round(latencies[-1], 3) if latencies else None,
        "deliver_p50_s": round(float(np.percentile(delivery, 50)), 3) if delivery else None,
        "deliver_p99_s": round(float(np.percentile(delivery, 99)), 3) if delivery else None,
    }


def _enqueued(gw: GatewayProcess) -> dict[str, float]:
    """When each moment was written to the outbox (unix seconds, the store's clock)."""
    rows = gw.sql("SELECT message_id, toUnixTimestamp64Micro(enqueued_at) FROM tag_history WHERE action = 'fired'")
    return {str(mid): int(us) / 1e6 for mid, us in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moments", type=int, default=120)
    parser.add_argument("--samples-per-s", type=int, default=500_000)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-moments-") as tmp:
        off = _run(args, Path(tmp) / "off", moments_on=False)
        on = _run(args, Path(tmp) / "on", moments_on=True)
    result = {
        "moments": on["moments"],
        "expected": on["expected"],
        "p50_s": on["p50_s"],
        "p99_s": on["p99_s"],
        "max_s": on["max_s"],
        "deliver_p50_s": on["deliver_p50_s"],
        "deliver_p99_s": on["deliver_p99_s"],
        "lost": on["lost"],
        "duplicates": on["duplicates"],
        "unexpected": on["unexpected"],
        "background_samples_per_s": on["offered_samples_per_s"],
        "acked_samples_per_s": {"off": off["acked_samples_per_s"], "on": on["acked_samples_per_s"]},
        "stored_samples_per_s_off": off["stored_samples_per_s"],
        "stored_samples_per_s_on": on["stored_samples_per_s"],
        "throughput_on_vs_off": round(on["stored_samples_per_s"] / max(off["stored_samples_per_s"], 1), 3),
    }
    if not args.json:
        print(f"moments {on['moments']}/{on['expected']}, p50 {on['p50_s']} s, p99 {on['p99_s']} s", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
