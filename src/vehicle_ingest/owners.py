"""Owner registry: which owner a vehicle belongs to from which date, and who drives it.

A registry is a CSV file (`vin,owner_id,valid_from,drivers`, drivers separated by `|`; columns
separated by `,` `;` or a tab; UTF-8 with or without a byte order mark; any line ending), a JSON list
of objects with the same keys, or an .xlsx workbook (the first sheet, a header row with the same
names). Every format goes through one path (vehicle_ingest._registry_files reads, this module judges),
so a value is accepted or refused the same way whatever file it came in.

It is stored in the `ownership` table. Loading again updates: a row is identified by (vin,
valid_from), and a row already stored with that identity is replaced by the file's (that is how a
wrong owner is corrected; `plan_registry`, the dry run, lists such replacements). A vehicle changing
hands is a second row with a later `valid_from`; usage before that date stays with the previous owner.
Within one file, (vin, valid_from) is unique: a second row with the same pair is refused, naming both.

A file is loaded whole or not at all: every bad row is reported (each naming its `line`, `item` or
`row`), at most MAX_REPORTED_PROBLEMS of them plus a count of the rest.

Values:
- vin: 17 characters of the VIN alphabet.
- owner_id, and each driver id: text of 1 to OWNER_ID_MAX_LENGTH characters. They are keys, sent to
  every CDP as `userId`/`distinct_id` and looked up by each tag cycle, so they hold no character that
  breaks a line or hides: no control character (category Cc: tab, CR, LF, NEL U+0085, ...), no line or
  paragraph separator (U+2028, U+2029), no invisible format character (Cf: zero-width space, bidi
  overrides, U+FEFF), no lone surrogate (it cannot be stored as UTF-8); and they neither start nor end
  with a space. Spaces and tabs around a value are trimmed first (a spreadsheet's `a, b`); nothing
  else is changed. A driver id holds no `|` (it separates driver ids in CSV, so JSON cannot carry one
  either). A number (an .xlsx number cell, a JSON number) is its integer text: 12345.0 is "12345"; a
  number with a fraction or of 15 digits or more is refused, as a spreadsheet may have rounded it.
- valid_from: an ISO date or date-time (`2026-01-01`, `2026-01-01T08:00:00+01:00`), or an .xlsx date
  cell; without an offset it is UTC (an .xlsx date never has one). From 1900 to 2299, the store's range.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from vehicle_ingest._registry_files import (
    OWNER_ID_MAX_LENGTH,
    REGISTRY_MAX_BYTES,
    REGISTRY_MAX_ROWS,
    Record,
    read_records,
)
from vehicle_ingest.errors import ConfigError, ConfigErrors
from vehicle_ingest.storage import Store
from vehicle_ingest.validate import valid_vins

__all__ = [
    "MAX_REPORTED_PROBLEMS",
    "OWNER_ID_MAX_LENGTH",
    "REGISTRY_MAX_BYTES",
    "REGISTRY_MAX_ROWS",
    "Ownership",
    "check_person_id",
    "parse_registry",
    "plan_registry",
    "read_registry",
    "registry_bytes",
    "save_registry",
    "write_registry",
]

# Room for any CRM's key (UUIDs are 36, e-mail addresses at most 254): a key, not a document.
MAX_REPORTED_PROBLEMS = 50  # a file with 10,000 bad rows is one mistake repeated: show enough to find it
_REFUSED = {  # unicodedata categories an id may not hold: see the module docstring
    "Cc": "control character",
    "Cf": "invisible format character",
    "Cs": "lone surrogate",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST, _LAST = datetime(1900, 1, 1, tzinfo=UTC), datetime(2300, 1, 1, tzinfo=UTC)  # DateTime64(3)'s range
_EXACT_NUMBER = 1e15  # Excel keeps 15 significant digits
_STORED_CHUNK = 2000  # VINs per lookup of the stored registry (about 40 KB of query text)
_SHOWN_CHANGES = 50


@dataclass(frozen=True, slots=True)
class Ownership:
    vin: str
    owner_id: str
    valid_from_ms: int
    drivers: tuple[str, ...] = ()


class _Bad(Exception):  # noqa: N818 (internal: one row's problem, reported with the row's place)
    pass


# -- values ------------------------------------------------------------------------------------------


def _person_id_problem(value: str, field: str) -> str | None:
    if len(value) > OWNER_ID_MAX_LENGTH:
        return f"{field} has {len(value)} characters; at most {OWNER_ID_MAX_LENGTH} are allowed"
    for char in value:
        if kind := _REFUSED.get(unicodedata.category(char)):
            return f"{field} contains the {kind} U+{ord(char):04X}; none are allowed"
    for edge, char in (("starts", value[:1]), ("ends", value[-1:])):
        if char.isspace():
            return f"{field} {edge} with the space character U+{ord(char):04X}; ids do not start or end with spaces"
    return None


def check_person_id(value: str, field: str, where: str) -> str:
    """`value` when it is a usable owner or driver id; ConfigError naming `where`, the field and the rule if not.

    The message never repeats the value: it may be 300,000 characters, or a control sequence for a terminal.
    """
    if problem := _person_id_problem(value, field):
        raise ConfigError(where, problem)
    return value


def _text(value: Any, field: str) -> str:
    """A cell's or a JSON value's text, trimmed of spaces and tabs; numbers as their integer text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip(" \t")
    if isinstance(value, bool):
        raise _Bad(f"{field} is {str(value).lower()}, not text")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT_NUMBER:
            return str(int(value))
        raise _Bad(f"{field} is the number {value!r}, which a spreadsheet may have rounded: store it as text")
    if isinstance(value, date | time | timedelta):
        raise _Bad(f"{field} is a date or time, not text")
    raise _Bad(f"{field} must be text, not {'a list' if isinstance(value, list) else 'an object'}")


def _person_id(value: Any, field: str) -> str:
    text = _text(value, field)
    if problem := _person_id_problem(text, field):
        raise _Bad(problem)
    return text


def _vin(value: Any) -> str:
    vin = _text(value, "vin")
    if len(vin) != 17 or not valid_vins(np.array([vin.encode("ascii", "replace")], dtype="S17"))[0]:
        shown = vin if len(vin) <= 40 else f"{vin[:17]}... ({len(vin)} characters)"
        raise _Bad(f"vin {shown!r} is not 17 characters of the VIN alphabet (no I, O, Q)")
    return vin


def _valid_from_ms(value: Any) -> int:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _iso_moment(value.strip(" \t"))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        raise _Bad(
            f"valid_from is the number {value!r}, not a date: write an ISO date such as 2026-01-01"
            " (in a spreadsheet, format the column as a date)"
        )
    else:
        raise _Bad("valid_from must be an ISO date or date-time, such as 2026-01-01")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not _FIRST <= moment < _LAST:
        raise _Bad(f"valid_from {moment.isoformat()} is outside 1900-01-01 .. 2299-12-31")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _iso_moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        raise _Bad(
            f"valid_from {shown!r} is not an ISO date or date-time (such as 2026-01-01 or 2026-01-01T08:00:00+01:00)"
        ) from None


def _drivers(value: Any) -> tuple[str, ...]:
    """`a|b` (CSV, a cell, a JSON string) or a JSON list; empty ids are skipped, as in `a||b`."""
    if isinstance(value, list):
        ids = [_text(v, "a driver id") for v in value]
        if any("|" in d for d in ids):
            raise _Bad("a driver id contains |, which separates driver ids")
    else:
        ids = [d.strip(" \t") for d in _text(value, "drivers").split("|")]
    return tuple(_person_id(d, "a driver id") for d in ids if d)


def _ownership(fields: dict[str, Any]) -> Ownership:
    if missing := [k for k in ("vin", "owner_id", "valid_from") if _missing(fields.get(k))]:
        raise _Bad(f"missing {', '.join(missing)}")
    return Ownership(
        _vin(fields["vin"]),
        _person_id(fields["owner_id"], "owner_id"),
        _valid_from_ms(fields["valid_from"]),
        _drivers(fields.get("drivers")),
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip(" \t"))


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat()


# -- the whole file ----------------------------------------------------------------------------------


class _Problems:
    """The file's bad rows: all counted, the first MAX_REPORTED_PROBLEMS kept."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.shown: list[ConfigError] = []
        self.count = 0

    def add(self, where: str, problem: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_REPORTED_PROBLEMS:
            self.shown.append(ConfigError(where, problem, self.source))

    def raise_any(self) -> None:
        if not self.count:
            return
        errors = list(self.shown)
        if self.count > len(errors):
            rest = self.count - len(errors)
            errors.append(ConfigError("", f"and {rest} more bad rows (nothing was loaded)", self.source))
        raise ConfigErrors(errors)


def parse_registry(data: bytes | str, where: str, name: str = "") -> list[Ownership]:
    """Every row of a registry file (`data`: its bytes, or text; `name`: its file name, for the extension).

    ConfigErrors names every bad row (`WHERE: line 3: problem`) when any is bad, ConfigError a problem
    with the whole file (format, encoding, header, size).
    """
    if len(data) > REGISTRY_MAX_BYTES:
        raise ConfigError("", f"{len(data):,} bytes; a registry is at most {REGISTRY_MAX_BYTES:,}", where)
    return _validated(read_records(data, where, name), where)


def _validated(records: Iterable[Record], source: str) -> list[Ownership]:
    problems = _Problems(source)
    rows: list[Ownership] = []
    seen: dict[tuple[str, int], str] = {}  # (vin, valid_from) -> where it was first
    for count, record in enumerate(records, start=1):
        if count > REGISTRY_MAX_ROWS:
            raise ConfigError(record.where, f"more than {REGISTRY_MAX_ROWS:,} rows; split the registry", source)
        try:
            if record.problem:
                raise _Bad(record.problem)
            row = _ownership(record.fields)
        except _Bad as exc:
            problems.add(record.where, str(exc))
            continue
        first = seen.setdefault((row.vin, row.valid_from_ms), record.where)
        if first != record.where:
            problems.add(
                record.where,
                f"vin {row.vin} with valid_from {_iso(row.valid_from_ms)} is also on {first}:"
                " one row per vehicle and valid_from",
            )
            continue
        rows.append(row)
    problems.raise_any()
    if not rows:
        raise ConfigError("", "no ownership rows, only a header", source)
    return rows


def registry_bytes(path: Path) -> bytes:
    """The file's bytes; ConfigError when it is missing, not a file, unreadable or over REGISTRY_MAX_BYTES
    (read no further than that, whatever the file claims)."""
    source = str(path)
    if not path.exists():
        raise ConfigError("", "no such file", source)
    if not path.is_file():
        raise ConfigError("", "not a file", source)
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            data = b"" if size > REGISTRY_MAX_BYTES else file.read(REGISTRY_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError("", f"cannot read the file: {exc.strerror or exc}", source) from None
    if max(size, len(data)) > REGISTRY_MAX_BYTES:  # the file may grow between stat and read
        size = max(size, len(data))
        raise ConfigError("", f"{size:,} bytes; a registry is at most {REGISTRY_MAX_BYTES:,} (split it)", source)
    return data


def read_registry(path: Path) -> list[Ownership]:
    return parse_registry(registry_bytes(path), str(path), path.name)


def write_registry(path: Path, rows: Sequence[Ownership]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["vin", "owner_id", "valid_from", "drivers"])
        for r in rows:
            writer.writerow([r.vin, r.owner_id, _iso(r.valid_from_ms), "|".join(r.drivers)])


def save_registry(store: Store, rows: Sequence[Ownership]) -> int:
    store.insert_rows(
        "ownership",
        ["vin", "owner_id", "valid_from", "drivers"],
        [(r.vin, r.owner_id, datetime.fromtimestamp(r.valid_from_ms / 1000, tz=UTC), list(r.drivers)) for r in rows],
    )
    return len(rows)


# -- the dry run -------------------------------------------------------------------------------------


def plan_registry(store: Store, rows: Sequence[Ownership]) -> dict[str, Any]:
    """What loading `rows` would do to the stored registry; changes nothing.

    `new`, `unchanged` and `replaced` count the rows by what the store holds for their (vin,
    valid_from); `changes_of_hands` counts the rows that pass a vehicle from another owner (the
    previous row of the vehicle, in the store or the file, has another owner_id). The first 50 of
    the replaced rows and of the changes of hands are listed.
    """
    stored = _stored(store, sorted({r.vin for r in rows}))
    counts = {"new": 0, "unchanged": 0, "replaced": 0}
    replaced = []
    for r in rows:
        before = stored.get(r.vin, {}).get(r.valid_from_ms)
        kind = "new" if before is None else "unchanged" if before == (r.owner_id, r.drivers) else "replaced"
        counts[kind] += 1
        if kind == "replaced" and before is not None:
            moment = _iso(r.valid_from_ms)
            replaced.append({"vin": r.vin, "valid_from": moment, "owner_id": r.owner_id, "was": before[0]})
    hands = _changes_of_hands(stored, rows)
    return {
        "would_load": len(rows),
        "vehicles": len({r.vin for r in rows}),
        "owners": len({r.owner_id for r in rows}),
        **counts,
        "changes_of_hands": len(hands),
        "replaced_rows": replaced[:_SHOWN_CHANGES],
        "changes_of_hands_rows": hands[:_SHOWN_CHANGES],
    }


def _stored(store: Store, vins: list[str]) -> dict[str, dict[int, tuple[str, tuple[str, ...]]]]:
    """{vin: {valid_from ms: (owner_id, drivers)}} of the stored rows of these vehicles."""
    found: dict[str, dict[int, tuple[str, tuple[str, ...]]]] = {}
    for start in range(0, len(vins), _STORED_CHUNK):
        chunk = vins[start : start + _STORED_CHUNK]
        for vin, owner, ms, drivers in store.rows(
            "SELECT vin, owner_id, toUnixTimestamp64Milli(valid_from), drivers FROM ownership FINAL"
            " WHERE vin IN %(vins)s",
            {"vins": chunk},
        ):
            found.setdefault(vin, {})[int(ms)] = (owner, tuple(drivers))
    return found


def _changes_of_hands(
    stored: dict[str, dict[int, tuple[str, tuple[str, ...]]]], rows: Sequence[Ownership]
) -> list[dict[str, str]]:
    merged = {vin: {ms: owner for ms, (owner, _) in by_ms.items()} for vin, by_ms in stored.items()}
    for r in rows:  # the file's row replaces a stored one with the same identity
        merged.setdefault(r.vin, {})[r.valid_from_ms] = r.owner_id
    from_file = {(r.vin, r.valid_from_ms) for r in rows}
    changes = []
    for vin in sorted({r.vin for r in rows}):
        history = sorted(merged[vin].items())
        for (_, previous), (ms, owner) in pairwise(history):
            if owner != previous and (vin, ms) in from_file:
                changes.append({"vin": vin, "valid_from": _iso(ms), "from": previous, "to": owner})
    return changes
