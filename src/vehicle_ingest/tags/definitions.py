"""Tag definitions from `schemas/tags.toml`, validated against the owner features."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vehicle_ingest._resources import schema_path
from vehicle_ingest.errors import CatalogError
from vehicle_ingest.tags.holdout import MAX_SALT_BYTES, held_out
from vehicle_ingest.tags.rules import Rule, parse_rule

__all__ = [
    "COCKPIT_FEATURES",
    "DEFAULT_HOLDOUT_SALT",
    "OWNER_FEATURES",
    "TagDefinition",
    "default_tags_path",
    "load_tag_definitions",
]

COCKPIT_FEATURES = (
    "navigation",
    "voice",
    "media",
    "projection",
    "seat_heating",
    "climate",
    "cruise_control",
    "lane_keeping",
    "ota",
    "app",
)
_BASE_FEATURES = (
    "owned_days",
    "trips_28d",
    "trips_prev_28d",
    "km_28d",
    "km_prev_28d",
    "days_since_last_trip",
    "night_share_28d",
    "long_trips_28d",
    "commute_days_28d",
    "charging_28d",
    "dc_charging_28d",
    "service_km",
    "service_days",
    "tyre_kpa_min",
    "battery_12v_min",
)
OWNER_FEATURES: tuple[str, ...] = _BASE_FEATURES + tuple(
    f"{f}_days_{w}" for f in COCKPIT_FEATURES for w in ("28d", "total")
)


DEFAULT_HOLDOUT_SALT = "vehicle-ingest-holdout-1"  # [holdout] salt in tags.toml; changing it reshuffles every holdout


@dataclass(frozen=True, slots=True)
class TagDefinition:
    id: str
    description: str
    rule: Rule
    window: str
    evidence: tuple[str, ...]
    holdout: float = 0.0  # share of the audience held out of campaigns (vehicle_ingest.tags.holdout)
    holdout_salt: str = DEFAULT_HOLDOUT_SALT

    def held_out(self, owner_id: str) -> bool:
        """Whether this owner is in the tag's holdout: told to the CDP with every change, never flips."""
        return held_out(owner_id, self.id, self.holdout, self.holdout_salt)


def default_tags_path() -> Path:
    return schema_path("tags.toml")


_TAG_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")  # also what makes an id safe inside a SQL literal


def _definition(raw: dict[str, Any], where: str, known: frozenset[str]) -> TagDefinition:
    for key in ("id", "description", "rule", "window", "evidence"):
        if key not in raw:
            raise CatalogError(f"{where}: missing key {key!r}")
    if not _TAG_ID.match(str(raw["id"])):
        raise CatalogError(f"{where}: tag id {raw['id']!r} must be lowercase words joined by '_' and '.'")
    evidence = tuple(raw["evidence"])
    unknown = set(evidence) - known
    if unknown:
        raise CatalogError(f"{where}: evidence names unknown feature(s) {sorted(unknown)}")
    rule = parse_rule(raw["rule"], known, where)
    share = _share(raw.get("holdout", 0), where)
    return TagDefinition(raw["id"], raw["description"], rule, raw["window"], evidence, share)


def _share(value: Any, where: str) -> float:
    """A holdout share: a number from 0 (nobody held out) up to, not including, 1 (nobody left to reach)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise CatalogError(f"{where}: holdout must be a number from 0 up to (not including) 1, got {value!r}")
    return float(value)


def _apply_holdouts(tags: list[TagDefinition], doc: dict[str, Any], path: Path) -> list[TagDefinition]:
    """`[holdout]`: the salt, and `shares` by tag id (one feature of an adoption template, say)."""
    table = doc.get("holdout", {})
    salt = table.get("salt", DEFAULT_HOLDOUT_SALT)
    if not isinstance(salt, str) or not 0 < len(salt.encode()) <= MAX_SALT_BYTES:
        raise CatalogError(f"{path} [holdout]: salt must be text of 1 to {MAX_SALT_BYTES} bytes")
    shares = table.get("shares", {})
    unknown = set(shares) - {t.id for t in tags}
    if unknown:
        raise CatalogError(f"{path} [holdout.shares]: unknown tag id(s) {sorted(unknown)}")
    where = f"{path} [holdout.shares]"
    return [
        dataclasses.replace(t, holdout=_share(shares.get(t.id, t.holdout), f"{where} {t.id}"), holdout_salt=salt)
        for t in tags
    ]


def _expand(template: dict[str, Any], feature: str) -> dict[str, Any]:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{feature}", feature)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return {k: fill(v) for k, v in template.items()}


def load_tag_definitions(path: Path | None = None) -> tuple[TagDefinition, ...]:
    path = path or default_tags_path()
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    known = frozenset(OWNER_FEATURES)
    tags = [_definition(t, f"{path} tag #{i + 1}", known) for i, t in enumerate(doc.get("tag", []))]
    adoption = doc.get("adoption", {})
    for feature in adoption.get("features", []):
        if feature not in COCKPIT_FEATURES:
            raise CatalogError(f"{path} [adoption]: unknown cockpit feature {feature!r}")
        for i, template in enumerate(adoption.get("tag", [])):
            tags.append(_definition(_expand(template, feature), f"{path} adoption tag #{i + 1} ({feature})", known))
    _check_unique([t.id for t in tags], path)
    return tuple(_apply_holdouts(tags, doc, path))


def _check_unique(ids: Sequence[str], path: Path) -> None:
    seen: set[str] = set()
    for tag_id in ids:
        if tag_id in seen:
            raise CatalogError(f"{path}: duplicate tag id {tag_id!r}")
        seen.add(tag_id)
