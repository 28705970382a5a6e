"""CDP delivery against the real embedded store and a real local HTTP server: no mocks."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from vehicle_ingest.cdp import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Deliverer,
    Outbox,
    TagChange,
    change_message_id,
    idempotency_key,
    redact,
    sink_from_url,
)
from vehicle_ingest.storage import Store

TIMEOUT_S = 0.3
VIN = "1HGCM82633A004352"
T0 = 1_700_000_000_000


# -- fixtures ---------------------------------------------------------------


class StoreHandle:
    """The module's one store; `reopen` closes it and opens the same path again (chDB: one path per process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = Store.open(f"chdb://{path}")
        self.store.migrate()

    def reopen(self) -> Store:
        self.store.close()
        self.store = Store.open(f"chdb://{self.path}")
        return self.store


@pytest.fixture(scope="module")
def handle(tmp_path_factory) -> Iterator[StoreHandle]:
    h = StoreHandle(tmp_path_factory.mktemp("cdp") / "store")
    yield h
    h.store.close()


@pytest.fixture
def outbox(handle: StoreHandle) -> Outbox:
    for table in ("tag_history", "cdp_deliveries", "cdp_quarantine"):
        handle.store.command(f"TRUNCATE TABLE {table}")
    return Outbox(handle.store)


@dataclass
class Recorded:
    n: int
    path: str
    headers: dict[str, str]
    body: bytes
    answered: str  # "500", "timeout", "200", ...


@dataclass
class Server:
    """A real HTTP server on 127.0.0.1; `plan(n)` decides the answer to request n (1-based)."""

    plan: Callable[[int], str]
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> str:
        with self.lock:
            n = len(self.requests) + 1
            outcome = self.plan(n)
            self.requests.append(Recorded(n, path, headers, body, outcome))
        return outcome

    def bodies(self, answered: str | None = None) -> list[bytes]:
        return [r.body for r in self.requests if answered is None or r.answered == answered]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int], str]], tuple[Server, str]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(plan: Callable[[int], str]) -> tuple[Server, str]:
        state = Server(plan)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), name="cdp-test-http", daemon=True).start()
        servers.append(httpd)
        return state, f"127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            outcome = state.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if outcome == "timeout":
                time.sleep(TIMEOUT_S + 0.3)  # the client has given up; the server still "processed" it
                outcome = "200"
            try:
                self.send_response(int(outcome))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            except OSError:
                pass  # the client hung up after its timeout

        def log_message(self, *args) -> None:
            pass

    return Handler


def ok(_n: int) -> str:
    return "200"


def flaky(n: int) -> str:
    """#1 -> 500, #2 -> timeout, #3..#5 -> 200, and again (a split batch needs two 200s in a row)."""
    return ("500", "timeout", "200", "200", "200")[(n - 1) % 5]


def store_thread(fn, *args):
    return asyncio.to_thread(fn, *args)


def make_changes(n: int, *, owners: int = 50, evidence_bytes: int = 0, at: int = T0) -> list[TagChange]:
    changes = []
    for i in range(n):
        owner, tag = f"owner-{i % owners:04d}", ("maintenance_due", "night_driver", "adoption.voice.never_used")[i % 3]
        action = "added" if i % 4 else "removed"
        evidence = {"score": i, "window_days": 30, "note": "x" * evidence_bytes}
        traits = {"tags": [tag], "tag_count": 1}
        message_id = change_message_id(owner, tag, action, i)
        changes.append(TagChange(message_id, owner, tag, action, evidence, traits, at + i))
    return changes


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(f"vehicle_ingest_{name}", labels) or 0.0


def segment_messages(server: Server) -> list[dict]:
    return [m for body in server.bodies() for m in json.loads(body)["batch"]]


async def deliver_until_empty(deliverer: Deliverer, outbox: Outbox, sink: str, rounds: int = 40) -> int:
    total = 0
    for _ in range(rounds):
        total += await deliverer.deliver_once()
        if outbox.depth(sink) == 0:
            return total
    raise AssertionError(f"{sink} still has {outbox.depth(sink)} pending after {rounds} rounds")


# -- message ids and changes ------------------------------------------------------------------------


def test_message_id_is_deterministic_and_distinct_per_transition():
    a = change_message_id("owner-1", "night_driver", "added", 0)
    assert a == change_message_id("owner-1", "night_driver", "added", 0)
    assert uuid.UUID(a).version == 5
    ids = {change_message_id("owner-1", "night_driver", act, t) for t in range(50) for act in ("added", "removed")}
    ids |= {change_message_id("owner-2", "night_driver", "added", 0), change_message_id("owner-1", "x", "added", 0)}
    assert len(ids) == 102
    with pytest.raises(ValueError):
        change_message_id("owner-1", "night_driver", "toggled", 0)


def test_tag_change_json_round_trip():
    change = make_changes(1)[0]
    assert TagChange.from_json(change.to_json()) == change
    assert TagChange.from_json(json.dumps(change.to_json())) == change


def test_redaction_removes_vin_and_coordinates():
    change = TagChange(
        "m1",
        "owner-1",
        "night_driver",
        "added",
        {"vin": VIN, "Latitude": 52.5, "lon": 13.4, "lng": 13.4, "car": VIN.lower(), "region": "Berlin", "trips": 7},
        {"tags": ["night_driver", VIN], "longitude": 13.4, "tag_count": 1},
        T0,
    )
    clean = redact(change, allow_vin=False)
    assert clean.evidence == {"region": "Berlin", "trips": 7}
    assert clean.traits == {"tags": ["night_driver"], "tag_count": 1}
    assert VIN not in json.dumps(clean.to_json()).upper()
    allowed = redact(change, allow_vin=True)
    # allow_vin lets VINs through; coordinates never pass.
    assert allowed.evidence == {"vin": VIN, "car": VIN.lower(), "region": "Berlin", "trips": 7}
    assert change.evidence["vin"] == VIN  # the original is untouched


# -- outbox ------------------------------------------------------------------------------------------


def test_outbox_is_idempotent_ordered_and_exact(outbox):
    changes = make_changes(30)
    outbox.enqueue(list(reversed(changes)))
    outbox.enqueue(changes[:10] + changes[:10])
    later = TagChange(**{**changes[0].to_json(), "at_ms": T0 + 999_999})
    outbox.enqueue([later])  # same id, recomputed later: the first copy stays
    assert outbox.depth("a") == 30 and outbox.depth("b") == 30
    assert outbox.pending("a", 100) == changes  # oldest first, whatever the enqueue order
    outbox.mark_delivered("a", [c.message_id for c in changes[:12]])
    outbox.mark_delivered("a", [c.message_id for c in changes[:5]])  # a retried mark changes nothing
    assert outbox.depth("a") == 18 and outbox.depth("b") == 30
    assert outbox.pending("a", 5) == changes[12:17]
    assert outbox.history("owner-0001") == [c for c in changes if c.owner_id == "owner-0001"]
    assert len(outbox.history()) == 30


def test_outbox_survives_reopening_the_store(handle, outbox):
    changes = make_changes(20)
    outbox.enqueue(changes)
    outbox.mark_delivered("segment:x", [c.message_id for c in changes[:7]])
    reopened = Outbox(handle.reopen())
    assert reopened.pending("segment:x", 100) == changes[7:]
    assert reopened.depth("segment:x") == 13


# -- Segment -------------------------------------------------------------------------------------


def test_segment_delivers_every_change_through_500s_and_timeouts(outbox, serve):
    server, address = serve(flaky)
    changes = make_changes(250, evidence_bytes=4_500)  # ~5 KB per change: a batch of 100 must be split
    outbox.enqueue(changes)
    sink = sink_from_url(f"segment+http://WRITE%2FKEY@{address}/proxy", timeout_s=TIMEOUT_S)
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, store_thread, batch_size=100)

    delivered = asyncio.run(deliver_until_empty(deliverer, outbox, sink.name))

    assert delivered == 250 and outbox.depth(sink.name) == 0 and outbox.pending(sink.name, 10) == []
    assert {r.answered for r in server.requests} == {"500", "timeout", "200"}
    assert {r.path for r in server.requests} == {"/proxy/v1/batch"}
    expected_auth = "Basic " + base64.b64encode(b"WRITE/KEY:").decode()
    assert {r.headers["authorization"] for r in server.requests} == {expected_auth}
    assert max(len(b) for b in server.bodies()) <= MAX_BATCH_BYTES
    assert len(server.bodies("200")) > 3  # more accepted requests than batches: the batches were split

    messages = segment_messages(server)
    assert max(len(json.dumps(m, separators=(",", ":")).encode()) for m in messages) <= MAX_MESSAGE_BYTES
    tracks = [m for m in messages if m["type"] == "track"]
    assert {m["messageId"] for m in tracks} == {c.message_id for c in changes}
    identifies = {m["messageId"] for m in messages if m["type"] == "identify"}
    assert identifies == {f"{c.message_id}-identify" for c in changes}
    accepted = {m["messageId"] for body in server.bodies("200") for m in json.loads(body)["batch"]}
    assert {c.message_id for c in changes} <= accepted  # each change was in a request the CDP answered 200
    by_id: dict[str, list[dict]] = {}
    for m in tracks:
        by_id.setdefault(m["messageId"], []).append(m)
    assert any(len(copies) > 1 for copies in by_id.values())  # retries happened ...
    assert all(all(c == copies[0] for c in copies) for copies in by_id.values())  # ... with identical content

    first = next(m for m in tracks if m["messageId"] == changes[5].message_id)
    assert first["event"] == "Tag Added" and first["userId"] == changes[5].owner_id
    assert first["properties"]["tag"] == changes[5].tag and first["properties"]["score"] == 5
    assert first["timestamp"] == "2023-11-14T22:13:20.005Z"

    statuses = {s: metric(registry, "cdp_requests_total", sink=sink.name, status=s) for s in ("500", "timeout", "200")}
    assert all(v > 0 for v in statuses.values()) and sum(statuses.values()) == len(server.requests)
    assert metric(registry, "cdp_changes_delivered_total", sink=sink.name) == 250
    assert metric(registry, "cdp_outbox_depth", sink=sink.name) == 0
    assert metric(registry, "cdp_delivery_seconds_count", sink=sink.name) > 0


def test_huge_evidence_is_truncated_below_the_limit_not_dropped(outbox, serve):
    server, address = serve(ok)
    evidence = {f"k{i:04d}": "v" * (i % 50) for i in range(2_000)}
    evidence |= {"trace": "t" * 20_000, "samples": "s" * 9_000, "vin": VIN, "score": 0.93}
    big = TagChange(
        change_message_id("owner-big", "night_driver", "added", 0),
        "owner-big",
        "night_driver",
        "added",
        evidence,
        {"tags": ["night_driver"], "tag_count": 1},
        T0,
    )
    outbox.enqueue([big, *make_changes(3)])
    sink = sink_from_url(f"segment+http://key@{address}", timeout_s=TIMEOUT_S)
    assert asyncio.run(Deliverer(outbox, [sink], CollectorRegistry(), store_thread).deliver_once()) == 4

    track = next(m for m in segment_messages(server) if m["messageId"] == big.message_id)
    size = len(json.dumps(track, separators=(",", ":"), ensure_ascii=False).encode())
    assert MAX_MESSAGE_BYTES - 1_000 < size <= MAX_MESSAGE_BYTES
    props = track["properties"]
    assert props["evidence_truncated"] is True and props["tag"] == "night_driver" and props["score"] == 0.93
    assert "trace" not in props and "samples" not in props and "vin" not in props
    dropped = {k for k in evidence if k.startswith("k") and k not in props}
    kept = {k for k in props if k.startswith("k")}
    assert dropped and kept and max(len(evidence[k]) for k in kept) <= min(len(evidence[k]) for k in dropped)
    others = [m for m in segment_messages(server) if m["type"] == "track" and m["messageId"] != big.message_id]
    assert len(others) == 3 and not any("evidence_truncated" in m["properties"] for m in others)


def test_second_deliver_once_sends_nothing(outbox, serve):
    server, address = serve(ok)
    outbox.enqueue(make_changes(40))
    deliverer = Deliverer(outbox, [sink_from_url(f"segment+http://key@{address}")], CollectorRegistry(), store_thread)
    assert asyncio.run(deliverer.deliver_once()) == 40
    sent = len(server.requests)
    assert asyncio.run(deliverer.deliver_once()) == 0
    assert len(server.requests) == sent == 1


def test_refused_credentials_are_retried_and_counted_apart(outbox, serve, caplog):
    # 401: the sink refuses us, not one change (a refused change is quarantined: test_cdp_quarantine.py).
    _, address = serve(lambda n: "401" if n == 1 else "200")
    outbox.enqueue(make_changes(5))
    sink = sink_from_url(f"segment+http://key@{address}")
    registry = CollectorRegistry()
    deliverer = Deliverer(outbox, [sink], registry, store_thread)
    with caplog.at_level(logging.ERROR, logger="vehicle_ingest.cdp"):
        assert asyncio.run(deliverer.deliver_once()) == 0
    assert "REJECTED" in caplog.text and outbox.depth(sink.name) == 5
    assert metric(registry, "cdp_outbox_depth", sink=sink.name) == 5
    assert asyncio.run(deliverer.deliver_once()) == 5
    assert metric(registry, "cdp_requests_total", sink=sink.name, status="401") == 1
    assert metric(registry, "cdp_requests_total", sink=sink.name, status="200") == 1


def test_connection_refused_keeps_everything_pending(outbox):
    closed = f"127.0.0.1:{_free_port()}"
    outbox.enqueue(make_changes(3))
    sink = sink_from_url(f"webhook+http://{closed}/hook", timeout_s=TIMEOUT_S)
    registry = CollectorRegistry()
    assert asyncio.run(Deliverer(outbox, [sink], registry, store_thread).deliver_once()) == 0
    assert outbox.depth(sink.name) == 3
    assert metric(registry, "cdp_requests_total", sink=sink.name, status="error") == 1


def test_run_backs_off_and_drains_two_sinks_independently(outbox, serve, tmp_path):
    server, address = serve(lambda n: "503" if n <= 3 else "200")
    outbox.enqueue(make_changes(120))
    web = sink_from_url(f"webhook+http://{address}/hook")
    file = sink_from_url(f"file://{tmp_path / 'out.jsonl'}")

    async def scenario() -> None:
        stop = asyncio.Event()
        deliverer = Deliverer(
            outbox, [web, file], CollectorRegistry(), store_thread, backoff_min_s=0.01, backoff_max_s=0.05
        )
        task = asyncio.create_task(deliverer.run(stop, interval_s=0.05))
        for _ in range(200):
            if await asyncio.to_thread(outbox.depth, web.name) == 0:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert outbox.depth(web.name) == 0 and outbox.depth(file.name) == 0
    assert [r.answered for r in server.requests[:3]] == ["503"] * 3
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 120


# -- Sensors, webhook, file ------------------------------------------------------------------------


def test_sensors_records(outbox, serve):
    server, address = serve(lambda n: "500" if n == 1 else "200")
    added = TagChange(
        change_message_id("o1", "adoption.voice.never_used", "added", 0),
        "o1",
        "adoption.voice.never_used",
        "added",
        {"voice_sessions": 0, "lat": 52.1},
        {"tags": []},
        T0,
    )
    removed = TagChange(
        change_message_id("o1", "night_driver", "removed", 1),
        "o1",
        "night_driver",
        "removed",
        {"night_share": 0.1},
        {"tags": []},
        T0 + 1,
    )
    outbox.enqueue([added, removed])
    sink = sink_from_url(f"sensors+http://{address}/sa?project=fleet&token=s3cret")
    assert sink.name == f"sensors:http://{address}/sa?project=fleet"  # the token is not part of the name
    deliverer = Deliverer(outbox, [sink], CollectorRegistry(), store_thread)
    assert asyncio.run(deliverer.deliver_once()) == 0
    assert asyncio.run(deliverer.deliver_once()) == 2

    first, retry = (json.loads(b) for b in server.bodies())
    assert first == retry and server.requests[1].path == "/sa?project=fleet&token=s3cret"
    set_, unset = first
    assert set_ == {
        "type": "profile_set",
        "distinct_id": "o1",
        "time": T0,
        "project": "fleet",
        "properties": {"voice_sessions": 0, "tag_adoption_voice_never_used": True},
        "_track_id": set_["_track_id"],
    }
    assert unset["type"] == "profile_unset" and unset["properties"] == {"tag_night_driver": True}
    assert unset["time"] == T0 + 1 and unset["project"] == "fleet"
    assert all(isinstance(r["_track_id"], int) and 0 <= r["_track_id"] < 2**31 for r in first)
    assert set_["_track_id"] != unset["_track_id"]


def test_webhook_payload_and_idempotency_key(outbox, serve):
    server, address = serve(lambda n: "timeout" if n == 1 else "200")
    changes = make_changes(7)
    changes[0] = TagChange(**{**changes[0].to_json(), "evidence": {"vin": VIN, "score": 1}})
    outbox.enqueue(changes)
    sink = sink_from_url(f"webhook+http://user:pw@{address}/hooks/tags", timeout_s=TIMEOUT_S)
    deliverer = Deliverer(outbox, [sink], CollectorRegistry(), store_thread)
    asyncio.run(deliver_until_empty(deliverer, outbox, sink.name))

    bodies = server.bodies()
    assert len(bodies) >= 2 and all(b == bodies[0] for b in bodies)  # the retry re-sent the same request
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert keys == {idempotency_key([c.message_id for c in changes])}
    assert server.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    body = json.loads(server.bodies()[0])
    assert [TagChange.from_json(c) for c in body["changes"]] == [redact(c, allow_vin=False) for c in changes]
    assert VIN.encode() not in server.bodies()[0]


def test_jsonl_appends_and_survives_a_rerun(outbox, tmp_path):
    path = tmp_path / "cdp" / "changes.jsonl"
    first, second = make_changes(10), make_changes(15, at=T0 + 10_000)[10:]

    def run_once(changes: list[TagChange]) -> int:
        outbox.enqueue(changes)
        sink = sink_from_url(f"jsonl://{path}")  # a new sink and deliverer each time: a process re-run
        return asyncio.run(Deliverer(outbox, [sink], CollectorRegistry(), store_thread).deliver_once())

    assert run_once(first) == 10
    with path.open("ab") as f:
        f.write(b'{"torn":')  # a crash mid-write
    assert run_once(second) == 5
    lines = path.read_text().splitlines()
    assert lines[10] == '{"torn":'
    assert [TagChange.from_json(line) for line in lines[:10] + lines[11:]] == first + second
    assert sink_from_url(f"file://{path}").name == sink_from_url(f"jsonl://{path}").name


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
