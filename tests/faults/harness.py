"""The real processes of a fault scenario (brokers, gateways) and the probes that watch them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import metric
from vehicle_ingest.gateway.broker import Mosquitto, free_port
from vehicle_ingest.gateway.demo import GatewayProcess

__all__ = ["Rig", "drain", "metric", "rss_mb", "wait_until"]


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


@dataclass
class Rig:
    """Owns every process a scenario starts, so a failing scenario leaves none behind."""

    workdir: Path
    brokers: list[Mosquitto] = field(default_factory=list)
    gateways: list[GatewayProcess] = field(default_factory=list)

    def broker(self, persistence: bool = False, autosave_interval_s: int = 1800) -> Mosquitto:
        broker = Mosquitto(self.workdir / f"broker{len(self.brokers)}", free_port(), persistence)
        broker.autosave_interval_s = autosave_interval_s
        broker.start()
        self.brokers.append(broker)
        return broker

    def gateway(
        self, mqtt_url: str, *extra: str, name: str = "gw", client_id: str = "vi-faults-gw", store: Path | None = None
    ) -> GatewayProcess:
        """A ready gateway on its own embedded store (`workdir/<name>-store` unless given)."""
        gw = GatewayProcess(
            mqtt_url,
            f"chdb://{store or self.workdir / f'{name}-store'}",
            free_port(),
            self.workdir / f"{name}.log",
            "--client-id",
            client_id,
            *extra,
        )
        self.gateways.append(gw)
        gw.wait_ready()
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            if gw.process.poll() is None:
                gw.kill()
        for broker in self.brokers:
            broker.stop()
