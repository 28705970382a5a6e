"""Owner registry: which owner a vehicle belongs to from which date, and who drives it.

Loaded from CSV (`vin,owner_id,valid_from,drivers` with drivers separated by
`|`) or JSON (a list of objects with the same keys), stored in the
`ownership` table. Loading again updates: a row is identified by
(vin, valid_from); a vehicle changing hands is a second row with a later
`valid_from`, and usage before that date stays with the previous owner.

Owner and driver ids are at most OWNER_ID_MAX_LENGTH characters, without control
characters: they are keys, sent to every CDP as `userId`/`distinct_id`, and each
tag cycle looks owners up by id.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vehicle_ingest.errors import ConfigError
from vehicle_ingest.storage import Store
from vehicle_ingest.validate import valid_vins

__all__ = [
    "OWNER_ID_MAX_LENGTH",
    "Ownership",
    "check_person_id",
    "parse_registry",
    "read_registry",
    "save_registry",
    "write_registry",
]

# Room for any CRM's key (UUIDs are 36, e-mail addresses at most 254): a key, not a document.
OWNER_ID_MAX_LENGTH = 256


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


def check_person_id(value: str, field: str, where: str) -> str:
    """`value` when it is a usable owner or driver id; ConfigError naming `where`, the field and the limit if not.

    The message never repeats the value: it may be 300,000 characters, or a control sequence for a terminal.
    """
    if len(value) > OWNER_ID_MAX_LENGTH:
        raise ConfigError(where, f"{field} has {len(value)} characters; at most {OWNER_ID_MAX_LENGTH} are allowed")
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise ConfigError(where, f"{field} contains the control character U+{ord(control):04X}; none are allowed")
    return value


def _row(raw: dict[str, Any], where: str) -> Ownership:
    missing = [k for k in ("vin", "owner_id", "valid_from") if not str(raw.get(k) or "").strip()]
    if missing:
        raise ConfigError(where, f"missing {', '.join(missing)}")
    vin = str(raw["vin"]).strip()
    if len(vin) != 17 or not valid_vins(np.array([vin.encode("ascii", "replace")], dtype="S17"))[0]:
        shown = vin if len(vin) <= 40 else f"{vin[:17]}... ({len(vin)} characters)"
        raise ConfigError(where, f"vin {shown!r} is not 17 characters of the VIN alphabet (no I, O, Q)")
    owner = check_person_id(str(raw["owner_id"]).strip(), "owner_id", where)
    drivers = raw.get("drivers") or ()
    if isinstance(drivers, str):
        drivers = [d for d in drivers.split("|") if d]
    if not isinstance(drivers, list | tuple):
        raise ConfigError(where, "drivers must be a list of ids (JSON) or ids separated by | (CSV)")
    drivers = tuple(check_person_id(str(d), "a driver id", where) for d in drivers)
    return Ownership(vin, owner, _parse_time(str(raw["valid_from"]), where), drivers)


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
    return _csv_rows(text, where)


def _csv_rows(text: str, where: str) -> list[Ownership]:
    reader = csv.DictReader(io.StringIO(text, newline=""))  # fields keep any character; the checks see it
    rows = []
    try:
        for item in reader:
            rows.append(_row(item, f"{where} line {reader.line_num}"))
    except csv.Error as exc:  # e.g. a field over the csv module's limit (131,072 characters)
        raise ConfigError(
            f"{where} line {reader.reader.line_num}",  # DictReader's own count is the last good row's
            f"unreadable CSV ({exc}); owner_id is at most {OWNER_ID_MAX_LENGTH} characters",
        ) from None
    return rows


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
