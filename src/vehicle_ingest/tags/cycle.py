"""One tag cycle: feature jobs, then the tag engine. What the gateway schedules and `vehicle-ingest tags` runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.cdp import Outbox
from vehicle_ingest.features import FeatureJobs
from vehicle_ingest.storage import Store
from vehicle_ingest.tags.definitions import TagDefinition
from vehicle_ingest.tags.engine import TagEngine

__all__ = ["TagCycle"]


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
        """Fold new data into features, then emit tag changes to the outbox (synchronous, on the store thread)."""
        features = self.update_features(now_ms)
        tags = self.engine.run(now_ms)
        return {"features": features, "tags": asdict(tags)}

    def update_features(self, now_ms: int) -> dict[str, Any]:
        return asdict(FeatureJobs(self.store, self.signals, self.events).run(now_ms))

    def show(self, now_ms: int) -> dict[str, list[str]]:
        """Current tags per owner (after folding in new data); delivers nothing."""
        FeatureJobs(self.store, self.signals, self.events).run(now_ms)
        return TagEngine(self.store, self.signals, self.definitions, self.outbox).current_tags(now_ms)
