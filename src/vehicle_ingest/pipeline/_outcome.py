"""What a committed batch did, and the one place its metrics are counted.

Lag has one definition for every kind of message: from the newest sample or event a message
carries (head-unit clock) to the moment the insert holding it returned (queryable).
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field

import numpy as np

from vehicle_ingest.metrics import Metrics
from vehicle_ingest.receipts import Verdicts
from vehicle_ingest.validate import Reason

__all__ = ["Outcome", "record"]

_IDENTITY = ("invalid_vin", "vin_mismatch")


@dataclass(slots=True)
class Outcome:
    stored: int = 0  # new messages
    duplicates: int = 0  # accepted messages the store already held
    samples: int = 0  # rows written to `signals`
    events: int = 0  # rows written to `events`
    can_values: int = 0  # rows written to `can_signals`
    rejected: Tally[str] = field(default_factory=Tally)
    verdicts: Verdicts = field(default_factory=Verdicts.empty)  # what the head units' receipts say
    lag_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per new message

    def add(self, other: Outcome) -> Outcome:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.samples += other.samples
        self.events += other.events
        self.can_values += other.can_values
        self.rejected += other.rejected
        self.verdicts = self.verdicts + other.verdicts
        self.lag_ms = np.concatenate((self.lag_ms, other.lag_ms))
        return self


def record(outcome: Outcome, metrics: Metrics, messages: int) -> None:
    metrics.stored.inc(outcome.stored)
    metrics.duplicates.inc(outcome.duplicates)
    metrics.samples_stored.inc(outcome.samples)
    metrics.events_stored.inc(outcome.events)
    for label, count in outcome.rejected.items():
        metrics.rejected.labels(label).inc(count)
        if label in _IDENTITY:
            metrics.identity_violations.labels(label).inc(count)
    metrics.batch_messages.observe(messages)
    metrics.batch_samples.observe(outcome.samples)
    for lag in (np.maximum(outcome.lag_ms, 0) / 1000.0).tolist():
        metrics.lag_seconds.observe(lag)


def rejected_tally(reason: np.ndarray) -> Tally[str]:
    codes, counts = np.unique(reason[reason != Reason.OK], return_counts=True)
    return Tally({Reason(int(c)).label: int(n) for c, n in zip(codes, counts, strict=True)})
