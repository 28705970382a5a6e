"""Fixtures of the fault matrix: the scale (fast in `make test`, full in `make faults`) and the verdicts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.check import Verdict
from tests.faults.scale import VERDICT_LINE, VERDICTS, Scale


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> Scale:
    return Scale.full() if request.config.getoption("--faults-full", default=False) else Scale.fast()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[Verdict], Verdict]:
    """Keep a scenario's verdict for the summary line (before the test asserts on it)."""

    def keep(verdict: Verdict) -> Verdict:
        request.config.stash.setdefault(VERDICTS, []).append(verdict)
        # The report carries the line to the summary, also from a pytest-xdist worker.
        request.node.user_properties.append((VERDICT_LINE, verdict.line()))
        return verdict

    return keep
