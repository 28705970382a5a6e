"""Campaign definitions from `schemas/campaigns.toml`: audience tag, outcome, window; validated against the tags."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vehicle_ingest._resources import schema_path
from vehicle_ingest.errors import CatalogError
from vehicle_ingest.tags.definitions import COCKPIT_FEATURES, TagDefinition

__all__ = [
    "OUTCOME_FEATURES",
    "CampaignDefinition",
    "Outcome",
    "default_campaigns_path",
    "load_campaign_definitions",
]

# What a feature outcome may count, per owner over a window: trips' distance and number, days of cockpit use.
OUTCOME_FEATURES: tuple[str, ...] = ("km", "trips", *(f"{f}_days" for f in COCKPIT_FEATURES))
_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")  # also what makes an id safe to show and to bind
_MAX_WINDOW_DAYS = 365


@dataclass(frozen=True, slots=True)
class Outcome:
    """What counts as the campaign working: a tag `lost` / `gained`, or a `feature` (reaching `at_least`)."""

    kind: str  # "lost" | "gained" | "feature"
    name: str  # the tag id, or the feature
    at_least: float | None = None

    @property
    def binary(self) -> bool:
        """Success or not per owner (a rate); otherwise a number per owner (a mean)."""
        return self.kind != "feature" or self.at_least is not None

    @property
    def unit(self) -> str:
        """What one owner's outcome counts: `rate` (yes / no), or km, trips, days."""
        if self.binary:
            return "rate"
        return "days" if self.name.endswith("_days") else self.name

    def describe(self, window_days: int) -> str:
        within = f"within {window_days} days"
        if self.kind in ("lost", "gained"):
            return f"{self.kind} {self.name} {within}"
        if self.at_least is not None:
            return f"{self.name} >= {self.at_least:g} {within}"
        return f"change in {self.name} over {window_days} days (after minus before)"


@dataclass(frozen=True, slots=True)
class CampaignDefinition:
    id: str
    description: str
    audience: str
    outcome: Outcome
    window_days: int

    @property
    def window_ms(self) -> int:
        return self.window_days * 86_400_000


def default_campaigns_path() -> Path:
    return schema_path("campaigns.toml")


def _outcome(raw: Any, where: str, tags: frozenset[str]) -> Outcome:
    if not isinstance(raw, dict):
        raise CatalogError(f'{where}: outcome must be a table such as {{ lost = "maintenance_overdue" }}')
    kinds = [k for k in ("lost", "gained", "feature") if k in raw]
    extra = set(raw) - {"lost", "gained", "feature", "at_least"}
    if len(kinds) != 1 or extra:
        raise CatalogError(f"{where}: outcome needs exactly one of lost, gained, feature (and at_least with feature)")
    kind, name = kinds[0], raw[kinds[0]]
    if kind == "feature" and name not in OUTCOME_FEATURES:
        raise CatalogError(f"{where}: unknown outcome feature {name!r}; one of {', '.join(OUTCOME_FEATURES)}")
    if kind != "feature" and name not in tags:
        raise CatalogError(f"{where}: outcome tag {name!r} is not in tags.toml")
    at_least = raw.get("at_least")
    number = isinstance(at_least, int | float) and not isinstance(at_least, bool)
    if at_least is not None and (kind != "feature" or not number):
        raise CatalogError(f"{where}: at_least is a number, and only for a feature outcome")
    return Outcome(kind, name, None if at_least is None else float(at_least))


def _definition(raw: dict[str, Any], where: str, tags: dict[str, TagDefinition]) -> CampaignDefinition:
    for key in ("id", "description", "audience", "outcome", "window_days"):
        if key not in raw:
            raise CatalogError(f"{where}: missing key {key!r}")
    if not isinstance(raw["id"], str) or not _ID.match(raw["id"]):
        raise CatalogError(f"{where}: campaign id {raw['id']!r} must be lowercase words joined by '_' and '.'")
    audience = tags.get(raw["audience"])
    if audience is None:
        raise CatalogError(f"{where}: audience {raw['audience']!r} is not a tag of tags.toml")
    if audience.holdout <= 0:
        # Without held-out owners there is nothing to compare with: say so now, not as an empty result later.
        raise CatalogError(f"{where}: audience {audience.id!r} has no holdout in tags.toml; give it one (e.g. 0.1)")
    window = raw["window_days"]
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= _MAX_WINDOW_DAYS:
        raise CatalogError(f"{where}: window_days must be a whole number of days from 1 to {_MAX_WINDOW_DAYS}")
    outcome = _outcome(raw["outcome"], where, frozenset(tags))
    return CampaignDefinition(raw["id"], str(raw["description"]), audience.id, outcome, window)


def load_campaign_definitions(
    tags: Sequence[TagDefinition], path: Path | None = None
) -> tuple[CampaignDefinition, ...]:
    """The campaigns of `path` (default: the bundled schemas/campaigns.toml), checked against `tags`."""
    path = path or default_campaigns_path()
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    by_id = {t.id: t for t in tags}
    campaigns = [_definition(c, f"{path} campaign #{i + 1}", by_id) for i, c in enumerate(doc.get("campaign", []))]
    ids = [c.id for c in campaigns]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"{path}: duplicate campaign id {next(i for i in ids if ids.count(i) > 1)!r}")
    return tuple(campaigns)
