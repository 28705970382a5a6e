"""A sink that refuses one change: bisection, quarantine, release, exact depth gauges, wake-up.

Real parts only: the embedded store and a real HTTP receiver (tests/cdp_receiver.py) that answers
400 to any Segment batch carrying a chosen change, 200 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.cdp_receiver import Receiver
from vehicle_ingest.cdp import MAX_ANSWER_CHARS, Deliverer, Outbox, Sink, TagChange, change_message_id, sink_from_url
from vehicle_ingest.errors import DeliveryError
from vehicle_ingest.storage import Store

T0 = 1_700_000_000_000


@pytest.fixture
def outbox(store: Store) -> Outbox:
    for table in ("tag_history", "cdp_deliveries", "cdp_quarantine"):
        store.command(f"TRUNCATE TABLE {table}")
    return Outbox(store)


def changes(n: int, at: int = T0) -> list[TagChange]:
    out = []
    for i in range(n):
        owner, tag = f"owner-{i:04d}", ("night_driver", "maintenance_due")[i % 2]
        mid = change_message_id(owner, tag, "added", 0)
        out.append(TagChange(mid, owner, tag, "added", {"score": i}, {"tags": [tag]}, at + i))
    return out


async def on_this_thread(fn, *args):
    return fn(*args)


def segment(receiver: Receiver) -> Sink:
    return sink_from_url(f"segment+http://key@{receiver.address}", timeout_s=5)


def metric(registry: CollectorRegistry, name: str, sink: str) -> float:
    value = registry.get_sample_value(f"vehicle_ingest_{name}", {"sink": sink})
    assert value is not None, f"vehicle_ingest_{name}{{sink={sink!r}}} is not exposed"
    return value


def test_one_refused_change_is_narrowed_down_and_quarantined_the_rest_delivered_in_order(outbox, receiver):
    batch = changes(8)
    poison = batch[5]
    receiver.poison = {poison.message_id}
    outbox.enqueue(batch)
    sink = segment(receiver)
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, on_this_thread, batch_size=8)

    assert asyncio.run(deliverer.deliver_once()) == 7

    # [0-7] 400, [0-3] 200, [4-7] 400, [4-5] 400, [4] 200, [5] 400 -> quarantined, [6-7] 200.
    assert receiver.statuses() == [400, 200, 400, 400, 200, 400, 200]
    assert receiver.accepted_in_order() == [c.message_id for c in batch if c is not poison]
    [held] = outbox.quarantine.entries()
    assert (held.message_id, held.owner_id, held.action) == (poison.message_id, "owner-0005", "added")
    assert held.tag == poison.tag
    assert (held.sink, held.status) == (sink.name, "400")
    assert json.loads(held.answer) == {"error": f"invalid traits in {poison.message_id}"}
    assert outbox.pending(sink.name, 100) == [] and outbox.depth(sink.name) == 0
    assert metric(registry, "cdp_changes_delivered_total", sink.name) == 7
    assert metric(registry, "cdp_changes_quarantined_total", sink.name) == 1
    assert metric(registry, "cdp_quarantine_depth", sink.name) == 1
    assert metric(registry, "cdp_outbox_depth", sink.name) == 0
    # Quarantined means out of the way: the next round sends nothing at all.
    assert asyncio.run(deliverer.deliver_once()) == 0
    assert len(receiver.statuses()) == 7


def test_several_poisons_across_batches_each_other_change_accepted_exactly_once(outbox, receiver):
    batch = changes(250)
    poisons = [batch[i] for i in (0, 99, 100, 173, 249)]
    receiver.poison = {c.message_id for c in poisons}
    outbox.enqueue(batch)
    sink = segment(receiver)
    registry = CollectorRegistry()

    delivered = asyncio.run(Deliverer(outbox, [sink], registry, on_this_thread, batch_size=100).deliver_once())

    assert delivered == 245
    accepted = receiver.accepted()
    assert set(accepted) == {c.message_id for c in batch} - receiver.poison
    assert set(accepted.values()) == {1}
    assert receiver.accepted_in_order() == [c.message_id for c in batch if c.message_id not in receiver.poison]
    assert [q.message_id for q in sorted(outbox.quarantine.entries(), key=lambda q: q.owner_id)] == [
        c.message_id for c in poisons
    ]
    assert metric(registry, "cdp_changes_quarantined_total", sink.name) == 5
    assert metric(registry, "cdp_quarantine_depth", sink.name) == 5
    assert metric(registry, "cdp_outbox_depth", sink.name) == 0


def test_release_makes_a_change_pending_again_and_a_second_refusal_quarantines_it_again(outbox, receiver):
    batch = changes(4)
    poison = batch[2]
    receiver.poison = {poison.message_id}
    outbox.enqueue(batch)
    sink = segment(receiver)
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, on_this_thread)
    assert asyncio.run(deliverer.deliver_once()) == 3

    assert outbox.quarantine.release(["no-such-id"]) == []
    assert [q.message_id for q in outbox.quarantine.release([poison.message_id], sink.name)] == [poison.message_id]
    assert outbox.pending(sink.name, 10) == [poison] and outbox.quarantine.entries() == []
    assert asyncio.run(deliverer.deliver_once()) == 0  # still refused: back in quarantine
    assert [q.message_id for q in outbox.quarantine.entries(sink.name)] == [poison.message_id]
    assert metric(registry, "cdp_changes_quarantined_total", sink.name) == 2

    receiver.poison = set()  # the CDP was fixed
    released = outbox.quarantine.release(None, sink.name)  # --all
    assert [q.message_id for q in released] == [poison.message_id]
    assert asyncio.run(deliverer.deliver_once()) == 1
    assert receiver.accepted()[poison.message_id] == 1
    assert outbox.quarantine.entries() == [] and outbox.depth(sink.name) == 0
    assert metric(registry, "cdp_quarantine_depth", sink.name) == 0
    assert metric(registry, "cdp_changes_delivered_total", sink.name) == 4


@pytest.mark.parametrize("status", [503, 500, 429, 408])
def test_transient_answers_are_retried_whole_and_never_quarantine(outbox, receiver, status):
    batch = changes(6)
    receiver.poison, receiver.status = {batch[3].message_id}, status
    outbox.enqueue(batch)
    sink = segment(receiver)
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, on_this_thread)
    for _ in range(2):
        assert asyncio.run(deliverer.deliver_once()) == 0
    assert receiver.statuses() == [status, status]  # no splitting: the same batch, retried
    assert outbox.quarantine.entries() == [] and outbox.depth(sink.name) == 6
    assert metric(registry, "cdp_outbox_depth", sink.name) == 6
    assert metric(registry, "cdp_quarantine_depth", sink.name) == 0
    assert metric(registry, "cdp_changes_quarantined_total", sink.name) == 0


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refused_credentials_or_url_never_quarantine(outbox, receiver, status, caplog):
    receiver.refuse_all = status
    outbox.enqueue(changes(5))
    sink = segment(receiver)
    registry = CollectorRegistry()
    with caplog.at_level(logging.ERROR, logger="vehicle_ingest.cdp"):
        assert asyncio.run(Deliverer(outbox, [sink], registry, on_this_thread).deliver_once()) == 0
    assert "REJECTED a batch of 5" in caplog.text
    assert receiver.statuses() == [status]
    assert outbox.quarantine.entries() == [] and outbox.depth(sink.name) == 5
    assert metric(registry, "cdp_outbox_depth", sink.name) == 5


def test_a_change_too_big_to_encode_is_quarantined_as_invalid(outbox, receiver):
    batch = changes(3)
    huge = TagChange(change_message_id("o" * 40_000, "t", "added", 0), "o" * 40_000, "t", "added", {}, {}, T0 + 1)
    outbox.enqueue([batch[0], huge, *batch[1:]])
    sink = segment(receiver)
    assert asyncio.run(Deliverer(outbox, [sink], CollectorRegistry(), on_this_thread).deliver_once()) == 3
    [held] = outbox.quarantine.entries()
    assert (held.message_id, held.status) == (huge.message_id, "invalid")
    assert "exceeds" in held.answer and len(held.answer) <= MAX_ANSWER_CHARS
    assert receiver.accepted_in_order() == [c.message_id for c in batch]


def test_quarantine_is_per_sink(outbox, receiver, tmp_path: Path):
    batch = changes(5)
    receiver.poison = {batch[1].message_id}
    outbox.enqueue(batch)
    web, file = segment(receiver), sink_from_url(f"file://{tmp_path / 'cdp.jsonl'}")
    assert asyncio.run(Deliverer(outbox, [web, file], CollectorRegistry(), on_this_thread).deliver_once()) == 9
    assert len((tmp_path / "cdp.jsonl").read_text().splitlines()) == 5  # the file sink got the refused one too
    assert [q.sink for q in outbox.quarantine.entries()] == [web.name]
    assert outbox.quarantine.entries(file.name) == [] and outbox.quarantine.depth(file.name) == 0
    assert outbox.quarantine.release(None, file.name) == []  # another sink's release touches nothing here
    assert outbox.quarantine.depth(web.name) == 1


def test_answer_is_truncated(outbox):
    outbox.enqueue(changes(1))
    outbox.quarantine.add("s", changes(1)[0].message_id, "400", "x" * 10_000)
    assert len(outbox.quarantine.entries()[0].answer) == MAX_ANSWER_CHARS


def test_depth_is_exact_after_changes_are_enqueued_not_only_after_failures(outbox, receiver):
    """The reported bug: the gauge read 0 after a drain and stayed 0 while new changes waited."""
    sink = segment(receiver)
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, on_this_thread)
    outbox.enqueue(changes(3))
    assert asyncio.run(deliverer.deliver_once()) == 3
    assert metric(registry, "cdp_outbox_depth", sink.name) == 0
    outbox.enqueue(changes(40, at=T0 + 1000)[3:])
    asyncio.run(deliverer.refresh_depth())  # what the gateway's tag cycle does after enqueueing
    assert metric(registry, "cdp_outbox_depth", sink.name) == 37


def test_wake_delivers_now_instead_of_after_the_interval(outbox, receiver):
    sink = segment(receiver)
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, lambda fn, *a: asyncio.to_thread(fn, *a))
    poison = changes(12)[7]
    receiver.poison = {poison.message_id}

    async def scenario() -> tuple[float, float]:
        stop = asyncio.Event()
        task = asyncio.create_task(deliverer.run(stop, interval_s=3600))  # only wake() can start a second round
        await asyncio.sleep(0.3)  # the first round found nothing
        await asyncio.to_thread(outbox.enqueue, changes(12))
        await deliverer.refresh_depth()  # as the gateway's tag cycle does: exact from the enqueue on
        assert metric(registry, "cdp_outbox_depth", sink.name) == 12
        deliverer.wake()

        def gauges() -> tuple[float, float]:
            return metric(registry, "cdp_outbox_depth", sink.name), metric(registry, "cdp_quarantine_depth", sink.name)

        for _ in range(200):  # 10 s, against an interval of an hour
            if len(receiver.accepted()) == 11 and gauges() == (0, 1):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
        return gauges()

    assert asyncio.run(scenario()) == (0, 1)
    assert sorted(receiver.accepted()) == sorted(c.message_id for c in changes(12) if c != poison)


def test_refuses_content_tells_poison_from_refused_requests():
    def error(status: str) -> DeliveryError:
        return DeliveryError("s", status, "")

    assert [s for s in ("400", "413", "422", "invalid") if error(s).refuses_content] == ["400", "413", "422", "invalid"]
    refused = ("401", "403", "404", "405", "407", "408", "429", "500", "503", "timeout", "error")
    assert not [s for s in refused if error(s).refuses_content]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[1]  # `tests` importable by the set-up script
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=root)


def test_cli_lists_and_releases_on_an_embedded_store(tmp_path: Path):
    """`--store`: what an operator runs while the gateway is stopped (chDB: another process, another path)."""
    dsn = f"chdb://{tmp_path / 'store'}"
    batch = changes(3)
    setup = (
        "import sys; from tests.test_cdp_quarantine import changes; from vehicle_ingest.cdp import Outbox;"
        " from vehicle_ingest.storage import Store\n"
        f"s = Store.open({dsn!r}); s.migrate(); o = Outbox(s); o.enqueue(changes(3))\n"
        "for c in changes(3)[1:]: o.quarantine.add('segment:x', c.message_id, '422', 'bad\\ntraits ' + 'y' * 200)\n"
        "s.close()"
    )
    assert _run("-c", setup).returncode == 0

    table = _run("-m", "vehicle_ingest.gateway.cli", "cdp", "quarantine", "--store", dsn).stdout.splitlines()
    assert table[0].split("\t") == ["message_id", "owner_id", "tag", "action", "sink", "status", "at", "answer"]
    rows = sorted(line.split("\t") for line in table[1:])
    assert [r[:6] for r in rows] == [[c.message_id, c.owner_id, c.tag, "added", "segment:x", "422"] for c in batch[1:]]
    assert all(r[7].startswith("bad traits yyy") and len(r[7]) == 80 for r in rows)  # one line, shortened

    both = _run("-m", "vehicle_ingest.gateway.cli", "cdp", "release", "--all", batch[1].message_id, "--store", dsn)
    assert both.returncode == 1
    assert both.stderr == "vehicle-ingest: release: give MESSAGE_ID ... or --all (one of the two)\n"
    released = _run(
        "-m", "vehicle_ingest.gateway.cli", "cdp", "release", batch[1].message_id, batch[0].message_id, "--store", dsn
    )
    assert released.returncode == 1 and released.stderr == f"vehicle-ingest: not quarantined: {batch[0].message_id}\n"
    assert json.loads(released.stdout) == {
        "released": [{"message_id": batch[1].message_id, "sink": "segment:x"}],
        "not_quarantined": [batch[0].message_id],
    }
    listed = json.loads(_run("-m", "vehicle_ingest.gateway.cli", "cdp", "quarantine", "--json", "--store", dsn).stdout)
    assert [q["message_id"] for q in listed["quarantined"]] == [batch[2].message_id]
    assert listed["quarantined"][0]["answer"] == "bad\ntraits " + "y" * 200  # --json: all of it
    assert json.loads(_run("-m", "vehicle_ingest.gateway.cli", "cdp", "release", "--all", "--store", dsn).stdout)[
        "released"
    ] == [{"message_id": batch[2].message_id, "sink": "segment:x"}]
    assert json.loads(
        _run("-m", "vehicle_ingest.gateway.cli", "cdp", "quarantine", "--json", "--store", dsn).stdout
    ) == {"quarantined": []}
