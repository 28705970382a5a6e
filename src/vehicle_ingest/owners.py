"""Owner registry: which owner a vehicle belongs to from which date, and who drives it.

Loaded from CSV (`vin,owner_id,valid_from,drivers` with drivers separated by
`|`) or JSON (a list of objects with the same keys), stored in the
`ownership` table. Loading again updates: a row is identified by
(vin, valid_from); a vehicle changing hands is a second row with a later
`valid_from`, and usage before that date stays with the previous owner.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vehicle_ingest.errors import ConfigError
from vehicle_ingest.storage import Store
from vehicle_ingest.validate import valid_vins

__all__ = ["Ownership", "parse_registry", "read_registry", "save_registry", "write_registry"]


@dataclass(frozen=True, slots=True)
class Ownership:
    vin: str
    owner_id: str
    valid_from_ms: int
    drivers: tuple[str, ...] = ()


def _parse_time(value: str, where: str) -> int:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(where, f"valid_from {value!r} is not an ISO date or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _row(raw: dict[str, Any], where: str) -> Ownership:
    missing = [k for k in ("vin", "owner_id", "valid_from") if not str(raw.get(k) or "").strip()]
    if missing:
        raise ConfigError(where, f"missing {', '.join(missing)}")
    vin = str(raw["vin"]).strip()
    if len(vin) != 17 or not valid_vins(np.array([vin.encode("ascii", "replace")], dtype="S17"))[0]:
        raise ConfigError(where, f"vin {vin!r} is not 17 characters of the VIN alphabet (no I, O, Q)")
    drivers = raw.get("drivers") or ()
    if isinstance(drivers, str):
        drivers = [d for d in drivers.split("|") if d]
    return Ownership(vin, str(raw["owner_id"]).strip(), _parse_time(str(raw["valid_from"]), where), tuple(drivers))


def parse_registry(text: str, where: str) -> list[Ownership]:
    """CSV with a header line, or a JSON list (text starting with `[`)."""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(where, f"invalid JSON: {exc}") from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ConfigError(where, "expected a JSON list of ownership objects")
        return [_row(item, f"{where} item {i + 1}") for i, item in enumerate(items)]
    reader = csv.DictReader(text.splitlines())
    return [_row(item, f"{where} line {i + 2}") for i, item in enumerate(reader)]


def read_registry(path: Path) -> list[Ownership]:
    return parse_registry(path.read_text(), str(path))


def write_registry(path: Path, rows: Sequence[Ownership]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["vin", "owner_id", "valid_from", "drivers"])
        for r in rows:
            moment = datetime.fromtimestamp(r.valid_from_ms / 1000, tz=UTC).isoformat()
            writer.writerow([r.vin, r.owner_id, moment, "|".join(r.drivers)])


def save_registry(store: Store, rows: Sequence[Ownership]) -> int:
    store.insert_rows(
        "ownership",
        ["vin", "owner_id", "valid_from", "drivers"],
        [(r.vin, r.owner_id, datetime.fromtimestamp(r.valid_from_ms / 1000, tz=UTC), list(r.drivers)) for r in rows],
    )
    return len(rows)
