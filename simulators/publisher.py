"""Publish simulated messages over MQTT 5 at QoS 1 and count what the broker acknowledged.

The truth file counts only messages whose PUBACK arrived: those are the ones
the broker took responsibility for, and so the ones the store must hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gateway.mqtt_source import parse_mqtt_url
from simulators.fleet import SimMessage

__all__ = ["PublishTotals", "publish"]


@dataclass
class PublishTotals:
    messages: int = 0
    samples: int = 0
    events: int = 0
    value_sum: float = 0.0
    bytes: int = 0
    seconds: float = 0.0
    failed: int = 0
    by_mid: dict[int, SimMessage] = field(default_factory=dict, repr=False)

    def add(self, msg: SimMessage) -> None:
        """Count one message the broker acknowledged."""
        self.messages += 1
        self.samples += msg.samples
        self.events += msg.events
        self.value_sum += msg.value_sum
        self.bytes += len(msg.payload)

    @classmethod
    def merged(cls, parts: Sequence[PublishTotals], seconds: float) -> PublishTotals:
        """Totals over several connections; unacknowledged messages count as failed."""
        totals = cls(seconds=seconds)
        for t in parts:
            totals.messages += t.messages
            totals.samples += t.samples
            totals.events += t.events
            totals.value_sum += t.value_sum
            totals.bytes += t.bytes
            totals.failed += t.failed + len(t.by_mid)
        return totals

    def as_dict(self) -> dict[str, float | int]:
        return {
            "messages": self.messages,
            "samples": self.samples,
            "events": self.events,
            "value_sum": self.value_sum,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "failed": self.failed,
        }


class _Publisher:
    def __init__(self, url: str, client_id: str, inflight: int) -> None:
        self.totals = PublishTotals()
        self._lock = threading.Lock()
        self._early: dict[int, bool] = {}
        self._window = threading.Semaphore(inflight)
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda *_a: self._connected.set()
        host, port, tls = parse_mqtt_url(url)
        if tls:
            self.client.tls_set()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise ConnectionError(f"no CONNACK from {url}")

    def _settle(self, msg: SimMessage, failed: bool) -> None:
        if failed:
            self.totals.failed += 1
            return
        self.totals.add(msg)

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: object, _p: object) -> None:
        failed = bool(getattr(rc, "is_failure", False))
        with self._lock:
            msg = self.totals.by_mid.pop(mid, None)
            if msg is None:
                self._early[mid] = failed  # PUBACK raced ahead of send() registering the mid
            else:
                self._settle(msg, failed)
        self._window.release()

    def send(self, msg: SimMessage) -> None:
        self._window.acquire()
        # Not under self._lock: paho calls on_publish holding its own lock,
        # and publish() takes that lock too.
        info = self.client.publish(msg.topic, msg.payload, qos=1)
        with self._lock:
            if info.mid in self._early:
                self._settle(msg, self._early.pop(info.mid))
            else:
                self.totals.by_mid[info.mid] = msg

    def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.totals.by_mid and time.monotonic() < deadline:
            time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()


def publish(
    messages: Sequence[SimMessage],
    url: str,
    *,
    speedup: float = 0.0,
    connections: int = 1,
    inflight: int = 500,
    client_prefix: str = "vi-sim",
) -> PublishTotals:
    """Send `messages` in order; `speedup` > 0 paces them at that multiple of simulated time."""
    pubs = [_Publisher(url, f"{client_prefix}-{i}", inflight) for i in range(max(1, connections))]
    started = time.monotonic()
    sim_origin = messages[0].sim_ts if messages else 0
    for i, msg in enumerate(messages):
        if speedup > 0:
            due = started + (msg.sim_ts - sim_origin) / 1000 / speedup
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
        pubs[i % len(pubs)].send(msg)
    for p in pubs:
        p.finish(timeout=60)
    return PublishTotals.merged([p.totals for p in pubs], time.monotonic() - started)
