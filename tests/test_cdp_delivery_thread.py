"""CDP delivery has its own store thread and connection: a send never waits for an ingest insert (issue 17).

Real parts: an in-process Gateway on the embedded store (its store thread, its CDP thread and
connection, the deliverer it wires) and a real Segment-compatible HTTP receiver (tests/cdp_receiver.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from vehicle_ingest.cdp import Deliverer, Outbox, TagChange, change_message_id, sink_from_url
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.service import Gateway
from vehicle_ingest.storage import Store

T0 = 1_700_000_000_000


@pytest.fixture
def outbox(store: Store) -> Outbox:
    for table in ("tag_history", "cdp_deliveries", "cdp_quarantine"):
        store.command(f"TRUNCATE TABLE {table}")
    return Outbox(store)


def changes(n: int, first: int = 0) -> list[TagChange]:
    out = []
    for i in range(first, first + n):
        owner = f"owner-{i:04d}"
        mid = change_message_id(owner, "night_driver", "added", 0)
        out.append(TagChange(mid, owner, "night_driver", "added", {"score": i}, {}, T0 + i))
    return out


async def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_a_change_reaches_the_cdp_while_the_store_thread_is_busy(store, outbox, receiver):
    """The store thread is held by a long job (as by a batch's insert); the change is still sent and marked."""
    config = GatewayConfig(cdp_urls=f"segment+http://key@{receiver.address}", deliver_interval_s=3600, moments=False)
    gateway = Gateway(config, store, CollectorRegistry())
    sink = f"segment:http://{receiver.address}"
    change = changes(1)[0]
    busy = threading.Event()  # set: the store thread may finish its job

    async def scenario() -> tuple[bool, bool]:
        delivering = asyncio.create_task(gateway.jobs.deliver_loop())
        held = asyncio.ensure_future(gateway.run_store(busy.wait, 60))
        await asyncio.sleep(0.3)  # the first round found nothing; the store thread is held from here on
        outbox.enqueue([change])  # on this thread: the ingest loop enqueues before its ack, then wakes
        gateway.jobs.wake_deliverer()
        sent = await _until(lambda: receiver.accepted()[change.message_id] == 1, 10.0)
        still_busy = not held.done()
        busy.set()
        await held
        gateway.request_stop()
        await asyncio.wait_for(delivering, 10)
        return sent, still_busy

    try:
        sent, still_busy = asyncio.run(scenario())
    finally:
        busy.set()
        gateway.close()
    assert sent and still_busy  # sent while the store thread was still busy, not after it
    assert outbox.pending(sink, 10) == []  # the delivered mark persisted, visible to the ingest connection
    assert receiver.accepted() == {change.message_id: 1}


def test_a_woken_round_sends_without_counting_first_and_recounts_only_after_failures(outbox, receiver):
    """Depth counts run at start and after failed rounds (at most every recount_every_s), never before a send."""
    calls: list[str] = []

    async def recording(fn: Callable[..., Any], *args: Any) -> Any:
        calls.append(fn.__name__)
        return await asyncio.to_thread(fn, *args)

    sink = sink_from_url(f"segment+http://key@{receiver.address}", timeout_s=5)
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, recording, backoff_min_s=0.05, backoff_max_s=0.1)

    def depth() -> float | None:
        return registry.get_sample_value("vehicle_ingest_cdp_outbox_depth", {"sink": sink.name})

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(deliverer.run(stop, interval_s=3600))
        assert await _until(lambda: calls == ["depth", "depth", "pending"], 5.0), calls  # start: exact, then empty
        calls.clear()
        await asyncio.to_thread(outbox.enqueue, changes(3))
        deliverer.wake()
        assert await _until(lambda: len(receiver.accepted()) == 3, 5.0)
        await asyncio.sleep(0.1)
        assert calls == ["pending", "mark_delivered"] and depth() == 0  # a short batch: drained, nothing counted

        calls.clear()
        receiver.refuse_all = 503  # the CDP is down: rounds fail and back off for 0.05 to 0.1 s
        await asyncio.to_thread(outbox.enqueue, changes(2, first=3))
        deliverer.wake()
        assert await _until(lambda: len(receiver.statuses()) >= 1 + 5, 10.0)  # several failed rounds
        await asyncio.sleep(0.1)
        # The first failure recounts (the gauge read 0); the next ones, within recount_every_s, do not.
        assert calls.count("depth") == 2 and depth() == 2, calls
        receiver.refuse_all = None
        assert await _until(lambda: len(receiver.accepted()) == 5 and depth() == 0, 5.0)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert set(receiver.accepted().values()) == {1}
