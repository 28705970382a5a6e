"""`make faults`: the whole matrix at full size, then ONE summary line computed from the verdicts.

python -m tests.faults [pytest args...]
"""

from __future__ import annotations

import sys
import time

import pytest

from tests.faults.check import Verdict
from tests.faults.scale import VERDICTS


class _Tally:
    """Counts scenario outcomes (a test that errors in set-up counts as failed) and keeps the verdicts."""

    def __init__(self) -> None:
        self.passed: set[str] = set()
        self.failed: set[str] = set()
        self.verdicts: list[Verdict] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed.add(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.verdicts = session.config.stash.get(VERDICTS, [])


def summary(tally: _Tally) -> str:
    failed = len(tally.failed)
    passed = len(tally.passed - tally.failed)
    lost = sum(v.lost + v.unreceipted for v in tally.verdicts)
    duplicated = sum(v.duplicated + v.wrong for v in tally.verdicts)
    unsaved = sum(v.broker_unsaved for v in tally.verdicts)
    unrouted = sum(v.broker_unrouted for v in tally.verdicts)
    causes = f"{unsaved} acked after its last save before a kill -9, {unrouted} routed to no one"
    broker = f" (plus {unsaved + unrouted} lost by mosquitto itself: {causes})" if unsaved + unrouted else ""
    return (
        f"faults: {passed + failed} scenarios, {passed} passed, {failed} failed; "
        f"messages lost {lost}, duplicated {duplicated}{broker}"
    )


def main(argv: list[str]) -> int:
    tally = _Tally()
    started = time.monotonic()
    # The checker's own unit tests are not scenarios: make test runs them.
    args = ["-q", "-p", "no:cacheprovider", "--faults-full", "--ignore=tests/faults/test_check.py", "tests/faults"]
    code = pytest.main([*args, *argv], plugins=[tally])
    print(f"\nfull matrix in {time.monotonic() - started:.0f}s:")
    for verdict in tally.verdicts:
        print(f"  {verdict.line()}")
    print(summary(tally))
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
