"""The probes that watch a fault scenario's processes (started by the `rig` fixture, tests/rig.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import metric
from vehicle_ingest.gateway.demo import GatewayProcess

__all__ = ["GW_ID", "drain", "metric", "rss_mb", "wait_until"]

GW_ID = "vi-faults-gw"  # a scenario's gateway: restarted with this id, it resumes its session on the broker


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(poll)


def drain(gateways: list[GatewayProcess], messages: int, timeout: float, quiet_s: float = 3.0) -> bool:
    """Wait until the gateways' stores together hold `messages`, or stop growing for `quiet_s` with nothing unacked.

    False when the count was not reached: the verdict then shows the loss,
    without waiting out the whole timeout for messages that will never come.
    """
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while (held := sum(gw.stats()["messages"] for gw in gateways)) < messages:
        now = time.monotonic()
        if held != last:
            last, last_change = held, now
        idle = all(metric(gw, "vehicle_ingest_unacked_messages") == 0 for gw in gateways)
        if now > deadline or (idle and now - last_change > quiet_s):
            return False
        time.sleep(0.25)
    return True


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")
