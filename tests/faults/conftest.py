"""Fixtures of the fault matrix: the scale (fast in `make test`, full in `make faults`), a rig, verdicts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.check import Verdict
from tests.faults.harness import Rig
from tests.faults.scale import VERDICT_LINE, VERDICTS, Scale
from vehicle_ingest.gateway.broker import mosquitto_path


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> Scale:
    return Scale.full() if request.config.getoption("--faults-full", default=False) else Scale.fast()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
    r = Rig(tmp_path)
    yield r
    r.close()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[Verdict], Verdict]:
    """Keep a scenario's verdict for the summary line (before the test asserts on it)."""

    def keep(verdict: Verdict) -> Verdict:
        request.config.stash.setdefault(VERDICTS, []).append(verdict)
        # The report carries the line to the summary, also from a pytest-xdist worker.
        request.node.user_properties.append((VERDICT_LINE, verdict.line()))
        return verdict

    return keep
