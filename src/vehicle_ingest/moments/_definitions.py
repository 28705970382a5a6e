"""Moment definitions: the `[[moment]]` entries of `schemas/tags.toml`, checked against the catalogs.

A moment watches channels: each listed signal on its own, or one cockpit event. Its conditions
are tag rules (vehicle_ingest.tags.rules) over the single name `value`, so the same reviewed
formula language compiles to SQL (rebuilding state from the store) and to numpy (the batch).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vehicle_ingest._resources import schema_path
from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.errors import CatalogError
from vehicle_ingest.tags.rules import Rule, parse_rule

__all__ = ["MomentDefinition", "load_moment_definitions"]

_ID = re.compile(r"^moment\.[a-z0-9_]+$")  # the prefix keeps moment ids apart from tag ids in tag_history
_NAMES = frozenset({"value"})
_KEYS = frozenset({"id", "description", "signals", "event", "fire", "rearm", "cooldown_h"})


@dataclass(frozen=True, slots=True)
class MomentDefinition:
    id: str
    description: str
    signal_ids: tuple[int, ...]  # catalog ids watched (empty for an event moment)
    signal_paths: tuple[str, ...]
    event_id: int | None  # the cockpit event watched, if any
    event_name: str
    fire: Rule | None  # None for an event moment: the event happening is the condition
    rearm: Rule | None  # None: never re-arms (once per vehicle)
    cooldown_ms: int

    @property
    def channels(self) -> tuple[str, ...]:
        """What each channel of this moment is called in a message's evidence."""
        return self.signal_paths if self.event_id is None else (self.event_name,)


def load_moment_definitions(
    signals: SignalCatalog, events: EventCatalog, path: Path | None = None
) -> tuple[MomentDefinition, ...]:
    path = path or schema_path("tags.toml")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    moments = [
        _definition(raw, f"{path} moment #{i + 1}", signals, events) for i, raw in enumerate(doc.get("moment", []))
    ]
    ids = [m.id for m in moments]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"{path}: duplicate moment id in {ids}")
    return tuple(moments)


def _definition(raw: dict[str, Any], where: str, signals: SignalCatalog, events: EventCatalog) -> MomentDefinition:
    unknown = set(raw) - _KEYS
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key in ("id", "description", "rearm", "cooldown_h"):
        if key not in raw:
            raise CatalogError(f"{where}: missing key {key!r}")
    if not _ID.match(str(raw["id"])):
        raise CatalogError(f"{where}: moment id {raw['id']!r} must be 'moment.' and lowercase words joined by '_'")
    if ("signals" in raw) == ("event" in raw):
        raise CatalogError(f"{where}: give either `signals` or `event`")
    cooldown = float(raw["cooldown_h"])
    if cooldown < 0:
        raise CatalogError(f"{where}: cooldown_h must be >= 0")
    rearm = None if raw["rearm"] == "never" else parse_rule(str(raw["rearm"]), _NAMES, where)
    common = {"id": raw["id"], "description": raw["description"], "rearm": rearm, "cooldown_ms": int(cooldown * 3.6e6)}
    if "event" in raw:
        if "fire" in raw or rearm is not None:
            raise CatalogError(f'{where}: an event moment fires when the event happens (no `fire`), rearm = "never"')
        try:
            event = events.by_name(str(raw["event"]))
        except (KeyError, CatalogError) as exc:
            raise CatalogError(f"{where}: unknown cockpit event {raw['event']!r}") from exc
        return MomentDefinition(
            signal_ids=(), signal_paths=(), event_id=event.id, event_name=event.name, fire=None, **common
        )
    if "fire" not in raw:
        raise CatalogError(f"{where}: missing key 'fire'")
    paths = tuple(str(p) for p in raw["signals"])
    try:
        ids = tuple(signals.by_path(p).id for p in paths)
    except (KeyError, CatalogError) as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    if not ids:
        raise CatalogError(f"{where}: `signals` is empty")
    fire = parse_rule(str(raw["fire"]), _NAMES, where)
    return MomentDefinition(signal_ids=ids, signal_paths=paths, event_id=None, event_name="", fire=fire, **common)
