"""Publish simulated messages over MQTT 5 at QoS 1, as receipt-aware head units, and count what was settled.

With `receipts` (the CLI default), a message counts once a gateway receipt covers it: only then is
it stored (schemas/WIRE_FORMAT.md section 13). Messages not covered are resent after a reconnect
and after `receipt_timeout_s`, like a head unit that keeps its buffer, and whatever is still not
covered at the end counts as failed. Without receipts, a message counts when its PUBACK arrives:
the broker took responsibility for it (in memory; mosquitto writes it at its next autosave).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vehicle_ingest.mqtt_url import parse_mqtt_url
from vehicle_ingest.simulators.fleet import SimMessage
from vehicle_ingest.simulators.headunit import Outstanding
from vehicle_ingest.simulators.progress import Progress

RECEIPT_FILTER = "vi/v1/+/receipt"  # a simulated fleet listens for all its vehicles on one connection

__all__ = ["RECEIPT_FILTER", "PublishTotals", "PublisherPool", "Resender", "publish"]


@dataclass
class PublishTotals:
    messages: int = 0
    samples: int = 0
    events: int = 0
    value_sum: float = 0.0
    bytes: int = 0
    seconds: float = 0.0
    failed: int = 0
    rejected: int = 0  # receipts said: rejected for good (dead-lettered)
    resent: int = 0  # copies sent again because no receipt covered them in time, or after a reconnect
    interrupted: bool = False  # Ctrl-C: these totals are what was settled until then
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
            "rejected": self.rejected,
            "resent": self.resent,
            **({"interrupted": True} if self.interrupted else {}),
        }

    @classmethod
    def from_receipts(cls, outstanding: Outstanding, seconds: float) -> PublishTotals:
        """What receipts settled: stored messages with their samples, rejected ones; unreceipted ones failed."""
        totals = cls(seconds=seconds)
        for msg in outstanding.settled.stored:
            totals.add(msg)
        totals.rejected = sum(outstanding.settled.rejected.values())
        totals.messages += totals.rejected
        totals.failed = len(outstanding) + len(outstanding.unkeyed)
        totals.resent = outstanding.settled.resent
        return totals


class _Publisher:
    def __init__(self, url: str, client_id: str, inflight: int, outstanding: Outstanding | None = None) -> None:
        self.totals = PublishTotals()
        self._lock = threading.Lock()
        self._early: dict[int, bool] = {}
        self._window = threading.Semaphore(inflight)
        self._connected = threading.Event()
        self._connections = 0
        self._outstanding = outstanding  # receipts: this connection listens for them
        self.reconnected = threading.Event()  # the resender sends every unreceipted message again
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        host, port, tls = parse_mqtt_url(url)
        if tls:
            self.client.tls_set()
        if outstanding is None:
            self.client.connect(host, port, keepalive=30)
        else:  # a persistent session, as the spec asks: receipts published while we are away wait for us
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect(host, port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise ConnectionError(f"no CONNACK from {url}")

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            return
        self._connections += 1
        if self._outstanding is not None:
            client.subscribe(RECEIPT_FILTER, qos=1)
        if self._connections > 1:
            self.reconnected.set()
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self._outstanding is not None:
            self._outstanding.on_receipt(bytes(msg.payload))

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

    def send(self, msg: SimMessage, outstanding: Outstanding | None = None) -> None:
        if outstanding is not None:
            outstanding.sent(msg)
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

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Resender:
    """A head unit's resend duty: every message not receipted, after a reconnect and after `timeout_s`."""

    def __init__(self, pubs: Sequence[_Publisher], outstanding: Outstanding, timeout_s: float) -> None:
        self._pubs, self._outstanding, self._timeout_s = pubs, outstanding, timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            reconnected = [p for p in self._pubs if p.reconnected.is_set()]
            for p in reconnected:
                p.reconnected.clear()
            due = self._outstanding.everything() if reconnected else self._outstanding.due(self._timeout_s)
            for i, msg in enumerate(due):
                self._pubs[i % len(self._pubs)].send(msg)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class PublisherPool:
    """A simulated fleet's MQTT connections, its receipt buffer and its resender, as one thing to send through."""

    def __init__(
        self,
        url: str,
        client_prefix: str,
        connections: int,
        inflight: int,
        receipts: bool,
        receipt_timeout_s: float,
    ) -> None:
        self.outstanding = Outstanding() if receipts else None
        self.pubs = [
            _Publisher(url, f"{client_prefix}-{i}", inflight, self.outstanding if i == 0 else None)
            for i in range(max(1, connections))
        ]
        outstanding = self.outstanding  # (an empty Outstanding is falsy: compare with None)
        self._resender = Resender(self.pubs, outstanding, receipt_timeout_s) if outstanding is not None else None

    def send(self, i: int, msg: SimMessage) -> None:
        self.pubs[i % len(self.pubs)].send(msg, self.outstanding)

    def settled_so_far(self) -> tuple[int, int]:
        """(messages, samples) settled: by receipts, or by PUBACKs without them."""
        if self.outstanding is not None:
            settled = self.outstanding.settled
            return len(settled.stored) + sum(settled.rejected.values()), sum(m.samples for m in settled.stored)
        return sum(p.totals.messages for p in self.pubs), sum(p.totals.samples for p in self.pubs)

    def run(self, send_all: Callable[[], None], settle_timeout_s: float) -> PublishTotals:
        """`send_all()`, then wait for PUBACKs and receipts; Ctrl-C stops sending and reports what settled so far."""
        started = time.monotonic()
        interrupted = False
        try:
            send_all()
            self._wait(60.0, settle_timeout_s)
        except KeyboardInterrupt:
            interrupted = True
            self._wait(2.0, 2.0)  # what is in flight now may still land
        finally:
            self._close()
        seconds = time.monotonic() - started
        if self.outstanding is not None:
            totals = PublishTotals.from_receipts(self.outstanding, seconds)
        else:
            totals = PublishTotals.merged([p.totals for p in self.pubs], seconds)
        totals.interrupted = interrupted
        return totals

    def _wait(self, puback_s: float, receipt_s: float) -> None:
        for p in self.pubs:
            p.finish(timeout=puback_s)
        if self.outstanding is not None:
            self.outstanding.wait_empty(receipt_s)

    def _close(self) -> None:
        if self._resender is not None:
            self._resender.stop()
        for p in self.pubs:
            p.close()


def publish(
    messages: Sequence[SimMessage],
    url: str,
    *,
    speedup: float = 0.0,
    connections: int = 1,
    inflight: int = 500,
    client_prefix: str = "vi-sim",
    receipts: bool = False,
    receipt_timeout_s: float = 30.0,
    settle_timeout_s: float = 60.0,
    progress: TextIO | None = None,
) -> PublishTotals:
    """Send `messages` in order; `speedup` > 0 paces them at that multiple of simulated time.

    With `receipts`, wait up to `settle_timeout_s` after the last PUBACK for receipts to cover every
    message, resending as a head unit does; the totals are what receipts settled. Ctrl-C stops
    sending and returns the totals of what was settled so far (`interrupted`).
    """
    pool = PublisherPool(url, client_prefix, connections, inflight, receipts, receipt_timeout_s)
    bar = Progress(progress, pool.settled_so_far)

    def send_all() -> None:
        started = time.monotonic()
        sim_origin = messages[0].sim_ts if messages else 0
        for i, msg in enumerate(messages):
            if speedup > 0:
                due = started + (msg.sim_ts - sim_origin) / 1000 / speedup
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
            pool.send(i, msg)
            bar.sent = i + 1
            bar.tick(bar.sent)

    totals = pool.run(send_all, settle_timeout_s)
    bar.tick(bar.sent, force=True)
    return totals
