"""One real MQTT connection per vehicle (thousands of them), on one asyncio loop with aiomqtt.

This is what a broker sees from a real fleet: every head unit its own TCP
connection, client id and keepalive. Each vehicle publishes once per period
at its own phase and awaits its PUBACK; only acknowledged messages count.
With receipts, each vehicle also subscribes to its own receipt topic, keeps
every message until a receipt covers it and resends it after a timeout, and
the totals are what receipts settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TextIO

import aiomqtt

from vehicle_ingest.mqtt_url import parse_mqtt_url
from vehicle_ingest.receipts import message_identity, receipt_topic
from vehicle_ingest.simulators.headunit import Outstanding
from vehicle_ingest.simulators.load_fleet import LoadFleet, LoadResult, LoadSpec
from vehicle_ingest.simulators.publisher import PublishTotals

__all__ = ["publish_per_vehicle"]

_CONNECTS_AT_ONCE = 64


class _Count:
    def __init__(self, receipts: bool) -> None:
        self.totals = PublishTotals()
        self.sent = 0
        self.connected = 0
        self.started: float | None = None  # when publishing began (all connected)
        self.outstanding = Outstanding() if receipts else None
        self.clients: dict[str, aiomqtt.Client] = {}  # by VIN: who resends a message


async def _receipts(client: aiomqtt.Client, outstanding: Outstanding) -> None:
    async for message in client.messages:
        outstanding.on_receipt(bytes(message.payload))


async def _resend(count: _Count, timeout_s: float, stop: asyncio.Event) -> None:
    assert count.outstanding is not None
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
        for msg in count.outstanding.due(timeout_s):
            identity = message_identity(msg.payload)
            client = count.clients.get(identity[0]) if identity else None
            if client is not None:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(msg.topic, msg.payload, qos=1, timeout=60)


async def _vehicle(
    vehicle: int,
    spec: LoadSpec,
    host: str,
    port: int,
    fleet: LoadFleet,
    count: _Count,
    gates: tuple[asyncio.Semaphore, asyncio.Event],
) -> None:
    connecting, go = gates
    client = aiomqtt.Client(
        host, port, identifier=f"vi-veh-{fleet.vins[vehicle]}", protocol=aiomqtt.ProtocolVersion.V5, keepalive=60
    )
    async with connecting:
        await client.__aenter__()
    count.connected += 1
    listener = None
    if count.outstanding is not None:
        vin = fleet.vins[vehicle]
        count.clients[vin] = client
        await client.subscribe(receipt_topic(vin), qos=1)
        listener = asyncio.create_task(_receipts(client, count.outstanding))
    try:
        await go.wait()
        period = spec.period_s
        started = time.monotonic() + vehicle / spec.vehicles * period
        event_chance = spec.events_per_hour * period / 3600.0
        for k in range(int(spec.duration_s / period)):
            await asyncio.sleep(max(0.0, started + k * period - time.monotonic()))
            messages = [fleet.signal_message(vehicle, k)]
            if fleet.rng.random() < event_chance:
                messages.append(fleet.event_message_for(vehicle))
            for msg in messages:
                count.sent += 1
                if count.outstanding is not None:
                    count.outstanding.sent(msg)
                with contextlib.suppress(aiomqtt.MqttError):  # not acked: counted as failed at the end
                    await client.publish(msg.topic, msg.payload, qos=1, timeout=60)
                    count.totals.add(msg)
        if count.outstanding is not None:
            await _settled(count.outstanding, spec.settle_timeout_s)
    finally:
        if listener is not None:
            listener.cancel()
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)


async def _settled(outstanding: Outstanding, timeout_s: float) -> None:
    """Stay connected (to hear receipts and resend) until every vehicle's messages are covered, or time is up."""
    deadline = time.monotonic() + timeout_s
    while len(outstanding) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def _report(count: _Count, spec: LoadSpec, progress: TextIO | None, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if progress is not None:
            t, elapsed = count.totals, max(time.monotonic() - (count.started or time.monotonic()), 1e-9)
            progress.write(
                f"{elapsed:6.1f}s connections {count.connected:>6,}/{spec.vehicles:,} sent {count.sent:>9,}"
                f" acked {t.messages:>9,} {t.messages / elapsed:>8,.0f} msg/s {t.samples / elapsed:>11,.0f} samples/s\n"
            )
            progress.flush()


async def publish_per_vehicle(spec: LoadSpec, url: str, fleet: LoadFleet, progress: TextIO | None) -> LoadResult:
    host, port, _tls = parse_mqtt_url(url)
    count = _Count(spec.receipts)
    go, stop = asyncio.Event(), asyncio.Event()
    gates = (asyncio.Semaphore(_CONNECTS_AT_ONCE), go)
    reporter = asyncio.create_task(_report(count, spec, progress, stop))
    resender = asyncio.create_task(_resend(count, spec.receipt_timeout_s, stop)) if spec.receipts else None
    tasks = [asyncio.create_task(_vehicle(v, spec, host, port, fleet, count, gates)) for v in range(spec.vehicles)]
    while count.connected < spec.vehicles and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    started = count.started = time.monotonic()
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
    await reporter
    if resender is not None:
        await resender
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise ConnectionError(f"{len(errors)} of {spec.vehicles} vehicle connections failed: {errors[0]!r}")
    seconds = time.monotonic() - started
    if count.outstanding is not None:
        count.totals = PublishTotals.from_receipts(count.outstanding, seconds)
    else:
        count.totals.seconds = seconds
        count.totals.failed = count.sent - count.totals.messages
    return LoadResult(count.totals, count.sent, spec.rate, spec.samples_per_message, connections=count.connected)
