"""Shared fixtures: the embedded store, and a rig of real mosquittos and gateway processes per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cdp_receiver import Receiver, start_receiver
from tests.rig import Rig
from vehicle_ingest.gateway.broker import Mosquitto
from vehicle_ingest.storage import Store

_fault_verdicts: list[str] = []  # summary lines of the fault scenarios run, in order of their reports


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-full", action="store_true", help="run tests/faults at full size (make faults), not the fast subset"
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Reports reach this process from pytest-xdist workers too; the fault fixture `record` puts its line there.
    if report.when == "call":
        _fault_verdicts.extend(str(line) for key, line in report.user_properties if key == "fault_verdict")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _fault_verdicts:
        terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Store]:
    """The embedded store of one test module, migrated.

    chDB allows one data directory per process: a module opens its own and
    closes it before the next module opens another.
    """
    s = Store.open(f"chdb://{tmp_path_factory.mktemp('store') / 'store'}")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """The test's brokers and gateways (tests/rig.py), in tmp_path; what is still running is stopped at teardown."""
    with Rig(tmp_path) as r:
        yield r


@pytest.fixture
def broker(rig: Rig) -> Mosquitto:
    return rig.broker()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local Segment-compatible CDP endpoint that accepts everything (a test may override the fixture)."""
    state = Receiver()
    httpd = start_receiver(state)
    yield state
    httpd.shutdown()
    httpd.server_close()
