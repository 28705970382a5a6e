"""The C reference client (clients/c): its encoder against the Python encoder, its unit tests, and its
example publisher through a real mosquitto into a real gateway.

The C code is built here (make -C clients/c: a release and an AddressSanitizer + UBSan build, both
-Werror); `make c-client` runs the larger comparison. Receipts do not come from the gateway yet: the
receipt test publishes them itself, as the gateway will (vi/v1/<VIN>/receipt).
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import msgpack
import paho.mqtt.client as mqtt
import pytest

from tests.rig import Rig
from vehicle_ingest.codec import decode_reference
from vehicle_ingest.gateway.broker import Mosquitto, free_port, mosquitto_path, stop_process, wait_for_port
from vehicle_ingest.gateway.demo import GatewayProcess

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "c"
SEED = 20261122
GENERATED = 3000
SANITIZERS = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"}

pytestmark = pytest.mark.integration


def _load_parity() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vi_c_parity", CLIENT / "tests" / "parity.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


parity = _load_parity()


@pytest.fixture(scope="module")
def built() -> None:
    missing = [
        what
        for what, ok in (
            ("gcc", shutil.which("cc") or shutil.which("gcc")),
            ("libmosquitto-dev", Path("/usr/include/mosquitto.h").exists()),
        )
        if not ok
    ]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: `make c-client` installs them (apt-get install gcc libmosquitto-dev)"
        )
    parity.build()


@pytest.fixture(scope="module")
def cases() -> list:
    return parity.generate_cases(SEED, GENERATED)


# --- encoder ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", parity.VARIANTS)
def test_c_unit_tests(built, variant):
    """Encoder edge cases, hostile receipts, seq persistence, buffer recovery at every truncation, outbox."""
    done = subprocess.run(
        [str(parity.binary(variant, "test_vi")), str(ROOT / "schemas" / "golden")],
        capture_output=True,
        text=True,
        env={**os.environ, **SANITIZERS},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all" in done.stdout and "checks passed" in done.stdout and "golden vectors included" in done.stdout


@pytest.mark.parametrize("variant", parity.VARIANTS)
def test_golden_vectors_c_python_spec(built, variant):
    lines, ok = parity.golden_lines(variant)
    assert ok, "\n".join(lines)
    assert len(lines) == 3


@pytest.mark.parametrize("variant", parity.VARIANTS)
def test_generated_cases_byte_for_byte(built, cases, variant):
    result = parity.check_variant(variant, cases)
    assert result.ok, parity.summary_line(variant, result) + "\n" + "\n".join(result.mismatches)
    assert result.cases == GENERATED
    assert min(result.kinds[k] for k in "SECQ") > 200
    assert 0.04 * GENERATED < result.refused < 0.2 * GENERATED  # the out-of-range half is exercised too


# --- the example publisher, a broker and a gateway -------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(built, tmp_path_factory) -> Iterator[GatewayProcess]:
    with Rig(tmp_path_factory.mktemp("c-client")) as rig:
        gw = rig.gateway(rig.broker().url)
        yield gw
        assert gw.stop() == 0


def _port(gw: GatewayProcess) -> int:
    return int(gw.mqtt_url.rsplit(":", 1)[1])


def _start(port: int, vin: str, state: Path, *args: str, stdin: int | None = None) -> subprocess.Popen:
    cmd = [
        str(parity.binary("asan", "vi_publisher")),
        "--port",
        str(port),
        "--vin",
        vin,
        "--state",
        str(state),
        "--connect-timeout-ms",
        "20000",
        "--status-interval-ms",
        "50",
        *args,
    ]
    log = (state.parent / f"{state.name}.log").open("ab")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=stdin, env={**os.environ, **SANITIZERS})


def _finish(proc: subprocess.Popen, state: Path, stdin: bytes | None = None, code: int = 0) -> dict:
    out, _ = proc.communicate(stdin, timeout=120)
    log = (state.parent / f"{state.name}.log").read_text()
    assert proc.returncode == code, f"vi_publisher exited {proc.returncode}:\n{log}"
    assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log
    return json.loads(out.decode().strip().splitlines()[-1])


def _wait(gw: GatewayProcess, sql: str, want: list, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    rows = gw.sql(sql)
    while rows != want and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = gw.sql(sql)
    return rows


def _per_vin(gw: GatewayProcess, vin: str) -> str:
    return (
        f"SELECT (SELECT count(DISTINCT seq) FROM signals WHERE vin = '{vin}'),"
        f" (SELECT count() FROM signals WHERE vin = '{vin}'),"
        f" (SELECT count(DISTINCT seq) FROM events WHERE vin = '{vin}'),"
        f" (SELECT count() FROM events WHERE vin = '{vin}')"
    )


def test_publisher_to_gateway_stats_match(gateway, tmp_path):
    """The C publisher's own account of what it sent equals what the gateway stored."""
    before = gateway.stats()
    summary = _finish(
        _start(
            _port(gateway),
            "WVWZZZ1JZXW100001",
            tmp_path / "state",
            "--messages",
            "40",
            "--events-every",
            "5",
            "--samples",
            "20",
            "--wait-receipts-ms",
            "30000",
        ),
        tmp_path / "state",
    )
    assert summary["created"] == summary["published"] == summary["acked"] == 40
    assert summary["samples"] == 32 * 2 * 20 and summary["events"] == 8 * 2
    deadline = time.monotonic() + 60
    after = gateway.stats()
    while after["messages"] < before["messages"] + 40 and time.monotonic() < deadline:
        time.sleep(0.2)
        after = gateway.stats()
    assert after["messages"] - before["messages"] == summary["created"]
    assert after["samples"] - before["samples"] == summary["samples"]
    assert after["events"] - before["events"] == summary["events"]
    assert after["value_sum"] - before["value_sum"] == pytest.approx(summary["value_sum"], rel=1e-9)
    assert after["rejected"] == before["rejected"]
    # The gateway's receipts covered every message: the head unit's buffer is empty.
    assert summary["pending"] == 0 and summary["receipted_stored"] == 40


def _buffer_records(path: Path) -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, int]]]:
    """Messages (seq, kind, payload) and covered ranges (first, last, rejected) of a buffer.vib, per its README."""
    data, off = path.read_bytes(), 0
    messages, covered = [], []
    while off < len(data):
        magic, rtype, kind, reserved, a, b, n = struct.unpack_from("<4sBBHQQI", data, off)
        end = off + 28 + n
        assert magic == b"VIB1" and reserved == 0 and end + 4 <= len(data)
        assert struct.unpack_from("<I", data, end)[0] == zlib.crc32(data[off:end])
        if rtype == 2:
            messages.append((a, kind, data[off + 28 : end]))
        elif rtype == 3:
            covered.append((a, b, kind))
        off = end + 4
    return messages, covered


def _status(state: Path) -> dict:
    try:
        return json.loads((state / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_kill_and_restart_loses_and_repeats_nothing(gateway, tmp_path):
    """kill -9 mid-run, restart on the same state directory: every buffered message stored once, no seq reused."""
    vin, state = "WVWZZZ1JZXW100002", tmp_path / "state"
    first = _start(_port(gateway), vin, state, "--messages", "400", "--interval-ms", "5", "--events-every", "4")
    deadline = time.monotonic() + 60
    while _status(state).get("created", 0) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    boot1, compactions1 = _status(state)["boot"], _status(state)["compactions"]
    summary = _finish(
        _start(_port(gateway), vin, state, "--messages", "30", "--events-every", "4", "--seed", "2"), state
    )
    assert summary["boot"] == boot1 + 1  # a new boot counter: no seq of the first run can come back
    assert summary["first_seq"] >> 32 == summary["last_seq"] >> 32 == boot1 + 1
    # Too small to compact (64 KiB of covered records), so the log holds every message ever buffered,
    # covered by a receipt or not: the truth the store must match.
    assert compactions1 == summary["compactions"] == 0
    messages, _ = _buffer_records(state / "buffer.vib")
    seqs = [seq for seq, _, _ in messages]
    assert seqs == sorted(set(seqs))  # unique and ascending
    by_boot = Counter(s >> 32 for s in seqs)
    assert set(by_boot) == {boot1, boot1 + 1} and by_boot[boot1 + 1] == 30
    assert by_boot[boot1] >= 60 and summary["recovered"] <= by_boot[boot1]  # all the first run made durable
    batch = decode_reference([payload for _, _, payload in messages])
    assert set(batch.messages.status.tolist()) == {0}
    kinds = batch.messages.kind.tolist()
    want = [kinds.count(1), len(batch.samples), kinds.count(2), len(batch.events)]
    rows = _wait(gateway, _per_vin(gateway, vin), [want])
    assert rows == [want], f"store {rows}, buffer {want}"
    stored = gateway.sql(
        f"SELECT DISTINCT seq FROM signals WHERE vin = '{vin}' UNION ALL "
        f"SELECT DISTINCT seq FROM events WHERE vin = '{vin}'"
    )
    assert sorted(r[0] for r in stored) == seqs
    [[value_sum]] = gateway.sql(f"SELECT sum(value) FROM signals WHERE vin = '{vin}'")
    assert value_sum == pytest.approx(float(batch.samples.value.sum()), rel=1e-9)


def test_input_lines_signals_and_events(gateway, tmp_path):
    """--input -: S and E lines, grouped into messages by blank lines and kind changes."""
    vin, state, now = "WVWZZZ1JZXW100003", tmp_path / "state", time.time_ns() // 1_000_000 - 60_000
    lines = [f"S,{now + 100 * i},1,-1,{500 + i}" for i in range(5)] + [f"S,{now},2,0,{48211314 + i}" for i in range(3)]
    lines += ["", f"E,{now + 5},1,0,com.vendor.radio", f"E,{now + 6},2,1234,Z\u00fcrich \u2192 K\u00f6ln, with a comma"]
    lines += ["# a comment", "", f"S,{now + 7},1,-1,1000"]
    proc = _start(_port(gateway), vin, state, "--input", "-", stdin=subprocess.PIPE)
    summary = _finish(proc, state, stdin=("\n".join(lines) + "\n").encode())
    assert (summary["created"], summary["samples"], summary["events"]) == (3, 9, 2)
    assert _wait(gateway, _per_vin(gateway, vin), [[2, 9, 1, 2]]) == [[2, 9, 1, 2]]
    texts = gateway.sql(f"SELECT text FROM events WHERE vin = '{vin}' ORDER BY ts")
    assert texts == [["com.vendor.radio"], ["Z\u00fcrich \u2192 K\u00f6ln, with a comma"]]
    bad = _start(_port(gateway), vin, tmp_path / "bad", "--input", "-", stdin=subprocess.PIPE)
    bad.communicate(b"S,1,2,3\n", timeout=60)
    assert bad.returncode == 1
    assert "input line 1: expected S,<ts_ms>,<signal_id>,<scale_exp>,<raw>" in (tmp_path / "bad.log").read_text()


HOSTILE_RECEIPTS = [
    b"",
    b"\x95\x01\x10",  # cut short
    b"\xdd\xff\xff\xff\xff\x01",  # 2^32-1 elements declared in 6 bytes
    b"\x95\x01\x10\xdb\xff\xff\xff\xf0A",  # a 4 GB vin
    msgpack.packb([2, 16, "x"]),  # another version
    msgpack.packb({"version": 1}),
    b"\xc1",
]


def _hostile(vin: str) -> list[bytes]:
    return [
        *HOSTILE_RECEIPTS,
        msgpack.packb([1, 15, vin, [], []]),  # another kind
        msgpack.packb([1, 16, "WVWZZZ1JZXW999999", [[0, 2**64 - 1]], []]),  # another VIN: must not drain us
        msgpack.packb([1, 16, vin, [[5, 9], [1, 3]], []]),  # not ascending
        msgpack.packb([1, 16, vin, [[0, 2**64 - 1]], []]) + b"\x00",  # trailing byte
        msgpack.packb([1, 16, vin, [[-1, 2**63]], []]),  # negative
        msgpack.packb([1, 16, vin, [], [[1, b"\xff"]]], use_bin_type=False),  # reason not UTF-8
        msgpack.packb([1, 16, vin, [[0, 2**64 - 1, 0]], []]),  # a range of 3
    ]


def _receipt_ranges(seqs: list[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for s in sorted(seqs):
        if ranges and ranges[-1][1] == s - 1:
            ranges[-1][1] = s
        else:
            ranges.append([s, s])
    return ranges


class _Listener:
    """Records the seq of every message published for a VIN (the test stands in for the gateway)."""

    def __init__(self, port: int, vin: str) -> None:
        self.seqs: list[int] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, msg: self.seqs.extend(
            decode_reference([msg.payload]).messages.seq.tolist()
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"vi/v1/{vin}/+", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_receipts_drain_the_buffer(built, tmp_path):
    """Receipts drain the buffer, a rejected seq is dropped with its reason logged, hostile and foreign receipts are
    ignored, and a message no receipt covered within the timeout is published again (same seq, same bytes)."""
    vin, state = "WVWZZZ1JZXW100004", tmp_path / "state"
    with Mosquitto.running(tmp_path / "broker") as broker:
        listener = _Listener(broker.port, vin)
        try:
            args = ["--messages", "20", "--events-every", "5", "--receipt-timeout-ms", "500"]
            proc = _start(broker.port, vin, state, *args, "--wait-receipts-ms", "60000")
            deadline = time.monotonic() + 30
            while _status(state).get("republished", 0) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)  # no receipt within 500 ms: everything is sent again
            seqs = sorted(set(listener.seqs))
            assert len(seqs) == 20 and len(listener.seqs) >= 40
            rejected, stored = seqs[-1], seqs[:-1]
            receipt = msgpack.packb([1, 16, vin, _receipt_ranges(stored), [[rejected, "value_out_of_range"]]])
            for payload in [*_hostile(vin), receipt]:
                listener.publish(f"vi/v1/{vin}/receipt", payload)
            summary = _finish(proc, state)
        finally:
            listener.close()
    assert summary["pending"] == 0 and summary["state"] == "done"
    assert summary["receipts"] == 1 and summary["receipts_ignored"] == len(_hostile(vin))
    assert summary["receipted_stored"] == 19 and summary["receipted_rejected"] == 1
    assert summary["republished"] >= 20
    log = (tmp_path / "state.log").read_text()
    assert f"seq {rejected} rejected by the gateway: value_out_of_range" in log
    assert "ignored a receipt for another VIN" in log
    assert _status(state)["pending"] == 0


# --- production transport: mutual TLS and the deployment's ACL, a broker restart -------------------------

DEPLOY = ROOT / "gateway" / "deploy" / "mosquitto"
TLS_VIN, OTHER_VIN, GATEWAY_CN = "SMXCCL1ENTTLS0001", "SMXCCL1ENTTLS0002", "vehicle-ingest-gateway"


@pytest.fixture(scope="module")
def pki(built, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    subprocess.run(
        ["sh", str(DEPLOY / "gen-certs.sh"), str(out), "localhost", TLS_VIN, GATEWAY_CN],
        check=True,
        capture_output=True,
    )
    return out


@contextmanager
def _tls_broker(pki: Path, work: Path, acl: str) -> Iterator[int]:
    """The deployment's mosquitto-tls.conf with paths, port and ACL file rewritten."""
    port = free_port()
    (work / "acl").write_text(acl)
    conf = (DEPLOY / "mosquitto-tls.conf").read_text()
    for old, new in (
        ("/mosquitto/certs/", f"{pki}/"),
        ("/mosquitto/config/acl", str(work / "acl")),
        ("/mosquitto/data/", f"{work}/"),
        ("listener 8883", f"listener {port} 127.0.0.1"),
        ("log_dest stdout", f"log_dest file {work / 'mosquitto.log'}"),
    ):
        assert old in conf, old
        conf = conf.replace(old, new)
    (work / "mosquitto.conf").write_text(conf + f"user {getpass.getuser()}\n")
    process = subprocess.Popen([str(mosquitto_path()), "-c", str(work / "mosquitto.conf")])
    try:
        wait_for_port(port)
        yield port
    finally:
        stop_process(process)


def _tls_args(pki: Path, cn: str) -> list[str]:
    return ["--tls-ca", str(pki / "ca.crt"), "--tls-cert", str(pki / f"{cn}.crt"), "--tls-key", str(pki / f"{cn}.key")]


def _receipting_gateway(port: int, pki: Path, refused: list[int]) -> mqtt.Client:
    """Stands in for the gateway over TLS: one receipt per message it reads; failed PUBACK codes go to `refused`."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    key = str(pki / f"{GATEWAY_CN}.key")
    client.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / f"{GATEWAY_CN}.crt"), keyfile=key)
    subscribed = threading.Event()

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        [seq] = decode_reference([msg.payload]).messages.seq.tolist()
        vin = msg.topic.split("/")[2]
        c.publish(f"vi/v1/{vin}/receipt", msgpack.packb([1, 16, vin, [[seq, seq]], []]), qos=1)

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            refused.append(reason.value)

    client.on_message = on_message
    client.on_publish = on_publish
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port)
    client.subscribe("vi/v1/+/signals", qos=1)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def test_mutual_tls_with_receipt_acl(pki, tmp_path):
    """Over the deployment's TLS listener (CN = VIN) and its ACL: the gateway identity writes receipts, the vehicle
    reads its own."""
    with _tls_broker(pki, tmp_path, (DEPLOY / "acl").read_text()) as port:
        refused: list[int] = []
        gateway_stand_in = _receipting_gateway(port, pki, refused)
        try:
            state = tmp_path / "state"
            args = ["--messages", "5", "--wait-receipts-ms", "30000", *_tls_args(pki, TLS_VIN)]
            summary = _finish(_start(port, TLS_VIN, state, *args), state)
        finally:
            gateway_stand_in.loop_stop()
            gateway_stand_in.disconnect()
    assert summary["receipts_subscribed"] is True and refused == []
    assert summary["pending"] == 0 and summary["receipts"] == 5 and summary["receipted_stored"] == 5


def test_deployed_acl_refuses_a_foreign_vin(pki, tmp_path):
    """A vehicle publishing under another VIN gets 0x87, which the client does not take for delivery."""
    with _tls_broker(pki, tmp_path, (DEPLOY / "acl").read_text()) as port:
        other = tmp_path / "other"
        proc = _start(port, OTHER_VIN, other, "--messages", "2", *_tls_args(pki, TLS_VIN))
        deadline = time.monotonic() + 20
        while _status(other).get("refused_by_broker", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        summary = _finish(proc, other)
    assert summary["state"] == "stopped" and summary["acked"] == 0 and summary["ack_errors"] >= 2
    assert summary["refused_by_broker"] == summary["pending"] == 2
    assert "broker refused the publish (reason 0x87)" in (tmp_path / "other.log").read_text()


def test_broker_restart_reconnects_and_republishes(built, tmp_path):
    """mosquitto stopped and started again mid-run: the publisher reconnects with a full CONNECT (session expiry
    included) and republishes what it had published before, then the rest."""
    broker = Mosquitto(tmp_path / "broker", free_port())
    broker.start()
    try:
        state = tmp_path / "state"
        proc = _start(broker.port, "WVWZZZ1JZXW100005", state, "--messages", "40", "--interval-ms", "25")
        deadline = time.monotonic() + 30
        while _status(state).get("acked", 0) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = _status(state)["published"]
        broker.stop()
        time.sleep(0.3)
        broker.start()
        summary = _finish(proc, state)
    finally:
        broker.stop()
    log = (tmp_path / "state.log").read_text()
    assert log.count("connected to 127.0.0.1") == 2 and "disconnected" in log
    assert summary["created"] == summary["published"] == 40 and summary["acked"] >= 40
    assert summary["republished"] >= before  # everything not receipted goes out again after a reconnect
