"""Small builders shared by the integration tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.simulators.fleet import SimMessage

SIGNALS = load_signal_catalog()
SPEED = SIGNALS.by_path("Vehicle.Speed")


def metric(gw: GatewayProcess, name: str) -> float:
    """The value of one unlabelled sample from the gateway's /metrics; a metric it does not expose fails the test
    (a renamed metric must not read as a reassuring 0)."""
    for line in gw.get("/metrics")[1].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the gateway's /metrics")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def speed_message(
    vin: str,
    seq: int,
    n: int = 10,
    base_ts: int | None = None,
    topic_vin: str | None = None,
    signal_id: int | None = None,
    values: np.ndarray | None = None,
) -> SimMessage:
    """A valid signals message of `n` speed samples (unless a field is overridden to make it invalid)."""
    base = now_ms() - 60_000 if base_ts is None else base_ts
    ts = base + np.arange(n, dtype=np.int64) * 1000
    raw = np.arange(n, dtype=np.int64) * 10 + 500 if values is None else values
    block = SignalBlock(SPEED.id if signal_id is None else signal_id, SPEED.scale_exp, ts, raw)
    payload = encode_signals(vin, seq, base, [block])
    value_sum = float((raw / 10 ** (-SPEED.scale_exp)).sum())
    return SimMessage(0, f"vi/v1/{topic_vin or vin}/signals", payload, n, 0, value_sum)


def raw_message(topic: str, payload: bytes) -> SimMessage:
    return SimMessage(0, topic, payload, 0, 0, 0.0)


def simulate(mqtt_url: str, truth: Path, *args: str, wait: bool = True) -> subprocess.Popen | dict:
    cmd = [
        sys.executable,
        "-m",
        "vehicle_ingest.gateway.cli",
        "simulate",
        "--mqtt-url",
        mqtt_url,
        "--truth",
        str(truth),
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    if not wait:
        return proc
    assert proc.wait(300) == 0
    return json.loads(truth.read_text())
