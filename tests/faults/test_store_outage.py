"""Fault 3: the embedded store stops taking writes under load, then recovers.

Two real faults on the store's filesystem (we run as root, so chmod would not
stop a write): the `signals` table directory made immutable (`chattr +i`: no
new part can be created), and the store on a small tmpfs that fills up (disk
full). The promise: nothing is acked that is not stored (the broker keeps the
backlog; the Receive Maximum window throttles it), the gateway's memory stays
flat, /readyz answers 503 for the whole outage, and after recovery the
backlog drains completely, every message once.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.check import compare, stored_messages
from tests.faults.harness import GW_ID, drain, metric, rss_mb, wait_until
from tests.faults.load import Load
from vehicle_ingest.gateway.broker import free_port
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.gateway.service import EXIT_GAVE_UP

pytestmark = pytest.mark.integration

PREFIX = "STRE"
RECEIVE_MAX = 500
TMPFS_MB = 256


@dataclass
class Probe:
    """What the gateway showed every half second of the outage."""

    ready: list[int] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)
    unacked: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def sample(self, gw: GatewayProcess) -> None:
        self.ready.append(gw.get("/readyz")[0])
        self.stored.append(gw.stats()["messages"])
        self.unacked.append(metric(gw, "vehicle_ingest_unacked_messages"))
        self.rss_mb.append(rss_mb(gw.process.pid))


def _signals_dir(gw: GatewayProcess) -> Path:
    rows = gw.sql("SELECT data_paths FROM system.tables WHERE database = currentDatabase() AND name = 'signals'")
    return Path(rows[0][0][0])


class _Immutable:
    """`chattr +i` on the signals table directory: inserts fail with 'Operation not permitted'."""

    def __init__(self, workdir: Path) -> None:
        self.store = workdir / "store"
        self._dir: Path | None = None

    def break_(self, gw: GatewayProcess) -> None:
        self._dir = _signals_dir(gw)
        subprocess.run(["chattr", "+i", str(self._dir)], check=True)

    def heal(self) -> None:
        if self._dir:
            subprocess.run(["chattr", "-i", str(self._dir)], check=True)
            self._dir = None


class _DiskFull:
    """The store on a tmpfs of TMPFS_MB; a filler file takes the free space: inserts fail with NOT_ENOUGH_SPACE."""

    def __init__(self, workdir: Path) -> None:
        self.mount = workdir / "tmpfs"
        self.mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(self.mount)])
        if done.returncode != 0:
            pytest.fail("cannot mount a tmpfs (needs root and mount rights) for the disk-full store")
        self.store = self.mount / "store"
        self._filler = self.mount / "filler"

    def break_(self, _gw: GatewayProcess) -> None:
        # dd ends with "No space left on device": that is the point.
        filler = ["dd", "if=/dev/zero", f"of={self._filler}", "bs=1M", "status=none"]
        subprocess.run(filler, check=False, stderr=subprocess.DEVNULL)

    def heal(self) -> None:
        self._filler.unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount)], check=False)


@pytest.fixture(params=["immutable", "disk_full"])
def fault(request, tmp_path, scale) -> Iterator[_Immutable | _DiskFull]:
    if request.param == "disk_full" and scale.name == "fast":
        pytest.skip("disk full runs in the full matrix (make faults); make test runs the immutable-directory variant")
    f = _Immutable(tmp_path) if request.param == "immutable" else _DiskFull(tmp_path)
    yield f
    f.heal()
    if isinstance(f, _DiskFull):
        f.close()


def _during(seconds: float, gw: GatewayProcess) -> Probe:
    probe = Probe()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe.sample(gw)
        time.sleep(0.5)
    return probe


def _restart_on_broken_store(rig, mqtt_url: str, flags: tuple[str, ...], store: Path) -> GatewayProcess | None:
    """A gateway started on the broken store: up and refusing (503), or failed fast naming the store.

    Which one depends on when the fault hit: an insert cut between creating its
    part directory and renaming it leaves a directory ClickHouse must remove
    when it loads the table, and cannot. Then the store does not open; the
    gateway exits 1 saying so (as for an unreachable server store) and its
    supervisor retries. Either way nothing is taken from the broker.
    """
    try:
        return rig.gateway(mqtt_url, *flags, client_id=GW_ID, store=store)
    except RuntimeError as exc:
        assert "cannot open store" in str(exc), f"the restart failed for another reason: {exc}"
        return None


def test_store_outage_acks_nothing_unstored_and_drains_after(rig, scale, record, fault, request):
    broker = rig.broker()
    flags = ("--receive-max", str(RECEIVE_MAX), "--batch-max-messages", "200", "--stop-timeout-s", "2")
    gw = rig.gateway(broker.url, *flags, client_id=GW_ID, store=fault.store)
    load = Load(broker.url, prefix=PREFIX, rate=scale.rate, receipt_timeout_s=scale.receipt_timeout_s).start()
    try:
        wait_until(lambda: gw.stats()["messages"] > 0, 30, "first messages stored before the fault")
        rss_before = rss_mb(gw.process.pid)
        fault.break_(gw)
        wait_until(lambda: gw.get("/readyz")[0] == 503, 15, "/readyz to turn 503 once inserts fail")
        sent_at_outage = load.sent
        first = _during(scale.store_outage_s / 2, gw)
        # SIGTERM mid-outage: the gateway gives up after stop_timeout_s and exits
        # 75 with its batch unacked; a new one starts on the still-broken store.
        stop_code = gw.stop()
        restarted = _restart_on_broken_store(rig, broker.url, flags, fault.store)
        if restarted is not None:
            gw = restarted
            wait_until(lambda: gw.get("/readyz")[0] == 503, 15, "/readyz 503 again after the restart")
            second = _during(scale.store_outage_s / 2, gw)
        else:
            second = Probe()
            time.sleep(scale.store_outage_s / 2)
        sent_in_outage = load.sent - sent_at_outage
        fault.heal()
        healed = time.monotonic()
        if restarted is None:  # the supervisor's retry, now that the store opens
            gw = rig.gateway(broker.url, *flags, client_id=GW_ID, store=fault.store)
    finally:
        load.stop()
    drained = drain([gw], len(load.truth), timeout=60)
    drained_s = time.monotonic() - healed
    ready_after = gw.get("/readyz")[0]
    verdict = compare(
        f"store outage ({request.node.callspec.id}) {scale.store_outage_s:.0f}s",
        load.truth,
        stored_messages([gw], PREFIX),
    )
    verdict.notes.update(
        published_during_outage=sent_in_outage,
        max_unacked=f"{max(first.unacked):.0f}/{max(second.unacked, default=0):.0f}",
        receive_max=RECEIVE_MAX,
        rss_mb=f"{rss_before:.0f}->{max(first.rss_mb):.0f}",
        exit_on_sigterm_mid_outage=stop_code,
        restart_on_broken_store="up, 503" if second.ready else "failed fast: cannot open store",
        drained_after_heal_s=round(drained_s, 1),
    )
    record(verdict.head_units(load.unreceipted, load.resent))
    assert gw.stop() == 0
    assert stop_code == EXIT_GAVE_UP, "a stop that cannot store its batch exits 75 (batch left unacked)"
    for probe in (first, second) if second.ready else (first,):
        assert all(code == 503 for code in probe.ready), f"/readyz during the outage: {probe.ready}"
        assert len(set(probe.stored)) == 1, f"nothing can be stored while the store refuses writes: {probe.stored}"
        # The broker holds the backlog: the unacked window fills and stops
        # growing, a small fraction of what is published meanwhile. (Not
        # always exactly Receive Maximum: up to 4.6x in our runs, cause open;
        # see docs/RELIABILITY.md.)
        if len(probe.unacked) >= 6:
            assert len(set(probe.unacked[len(probe.unacked) // 2 :])) == 1, f"unacked kept growing: {probe.unacked}"
        assert 4 * max(probe.unacked) < sent_in_outage, f"unacked during the outage: {probe.unacked}"
    assert sent_in_outage > 4 * RECEIVE_MAX, "the outage must outlast the unacked window by far"
    assert max(first.rss_mb) - rss_before < 150, f"RSS grew from {rss_before:.0f} to {max(first.rss_mb):.0f} MB"
    assert drained and ready_after == 200
    assert verdict.exact, verdict.line()


def test_gateway_without_a_reachable_server_store_fails_fast_naming_it(rig):
    """No ClickHouse server installs here: what can be shown is a refused connection at start.

    The gateway does not come up half-alive (taking messages it cannot store):
    it exits non-zero naming the store, and its supervisor retries.
    """
    broker = rig.broker()
    store = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = rig.gateway(broker.url, name="no-store", store=store, ready=False)
    log = rig.workdir / "no-store.log"
    assert gw.process.wait(60) == 1
    gw.stop()
    assert f"cannot open store {store}" in log.read_text()
