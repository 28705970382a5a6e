"""Shared fixtures: a real mosquitto per test, the embedded store, gateway processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vehicle_ingest.gateway.broker import Mosquitto, free_port, mosquitto_path
from vehicle_ingest.gateway.demo import GatewayProcess
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
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
    with Mosquitto.running(tmp_path / "broker", persistence=False) as b:
        yield b


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator:
    """Factory: start_gateway(broker_url, *extra_flags) -> a ready GatewayProcess on tmp_path/store."""
    started: list[GatewayProcess] = []

    def start(mqtt_url: str, *extra: str, store: Path | None = None) -> GatewayProcess:
        gw = GatewayProcess(
            mqtt_url, f"chdb://{store or tmp_path / 'store'}", free_port(), tmp_path / "gateway.log", *extra
        )
        started.append(gw)
        gw.wait_ready()
        return gw

    yield start
    for gw in started:
        if gw.process.poll() is None:
            gw.kill()
