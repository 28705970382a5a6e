"""One tag cycle: feature jobs, then the tag engine. What the gateway schedules and `vehicle-ingest tags` runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.cdp import Outbox
from vehicle_ingest.features import FeatureJobs
from vehicle_ingest.storage import Store
from vehicle_ingest.tags.definitions import TagDefinition
from vehicle_ingest.tags.engine import EMIT_CHUNK, Diff, TagEngine, TagRunReport

__all__ = ["CycleSteps", "TagCycle"]


@dataclass(frozen=True, slots=True)
class TagCycle:
    store: Store
    signals: SignalCatalog
    events: EventCatalog
    definitions: tuple[TagDefinition, ...]

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.store)

    @property
    def engine(self) -> TagEngine:
        return TagEngine(self.store, self.signals, self.definitions, self.outbox)

    def run(self, now_ms: int) -> dict[str, Any]:
        """Fold new data into features, then emit tag changes to the outbox, all at once."""
        steps = self.start(now_ms)
        while steps.step():
            pass
        return steps.report()

    def start(self, now_ms: int) -> CycleSteps:
        """The same cycle in steps a caller runs one at a time (the gateway lets ingest batches in between)."""
        return CycleSteps(self, now_ms)

    def update_features(self, now_ms: int) -> dict[str, Any]:
        return asdict(FeatureJobs(self.store, self.signals, self.events).run(now_ms))

    def show(self, now_ms: int) -> dict[str, list[str]]:
        """Current tags per owner (after folding in new data); delivers nothing."""
        FeatureJobs(self.store, self.signals, self.events).run(now_ms)
        return TagEngine(self.store, self.signals, self.definitions, self.outbox).current_tags(now_ms)


class CycleSteps:
    """One tag cycle as steps: features, the plan, then the changes in slices of EMIT_CHUNK.

    A step left unrun (the caller stopped) loses nothing: the next cycle plans it again.
    """

    def __init__(self, cycle: TagCycle, now_ms: int) -> None:
        self._cycle, self._now = cycle, now_ms
        self._engine = cycle.engine
        self._features: dict[str, Any] | None = None
        self._owners = 0
        self._diff: list[Diff] | None = None
        self._emitted = 0
        self.added = 0

    def step(self) -> bool:
        """Run the next step; False once the cycle is complete."""
        if self._features is None:
            self._features = self._cycle.update_features(self._now)
        elif self._diff is None:
            self._owners, self._diff = self._engine.plan(self._now)
        elif self._emitted < len(self._diff):
            chunk = self._diff[self._emitted : self._emitted + EMIT_CHUNK]
            self.added += self._engine.emit(chunk, self._now)
            self._emitted += len(chunk)
        return self._diff is None or self._emitted < len(self._diff)

    @property
    def changes(self) -> int:
        return len(self._diff or ())

    @property
    def emitted(self) -> int:
        """Changes written to the outbox so far."""
        return self._emitted

    def report(self) -> dict[str, Any]:
        tags = TagRunReport(self._owners, self.changes, self.added, self.changes - self.added)
        return {"features": self._features, "tags": asdict(tags)}
