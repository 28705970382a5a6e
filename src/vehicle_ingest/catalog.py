"""Signal and cockpit-event catalogs: what a head unit may send, and how.

`schemas/signals.csv` and `schemas/events.csv` are the source of truth, read by
vendors and non-programmers (`schemas/SIGNALS.md` explains them). This module
loads and validates them, and builds the numpy lookup tables the decoder
indexes by id.

Wire conventions the catalog fixes:

- A sample is (signal id, number). The head unit quantizes to a multiple of
  10**scale_exp: value = raw * 10**scale_exp (speed -1: 0.1 km/h steps).
- A VSS string enum is sent as the 0-based index into `allowed`, which keeps
  the VSS order (LowVoltageSystemState: 0=UNDEFINED, 1=LOCK, ... 4=ON).
- A boolean is sent as 0 or 1.
- An id not in the catalog makes the gateway reject the whole message
  (`unknown_signal`); a value outside min..max is rejected with
  `value_out_of_range`.
- Ids are stable: never renumbered, never reused after a signal is retired.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from vehicle_ingest._resources import schema_path
from vehicle_ingest.errors import CatalogError

__all__ = [
    "DEFAULT_EVENTS_PATH",
    "DEFAULT_SIGNALS_PATH",
    "EVENT_COLUMNS",
    "SIGNAL_COLUMNS",
    "VSS_DATATYPES",
    "EventCatalog",
    "EventType",
    "Signal",
    "SignalCatalog",
    "check_against_vss",
    "load_event_catalog",
    "load_signal_catalog",
]

DEFAULT_SIGNALS_PATH = schema_path("signals.csv")
DEFAULT_EVENTS_PATH = schema_path("events.csv")

SIGNAL_COLUMNS = ("id", "path", "datatype", "unit", "min", "max", "scale_exp", "allowed", "description")
EVENT_COLUMNS = ("id", "name", "value", "text", "description")

ID_MIN, ID_MAX = 1, 65535  # ids travel as uint16; 0 stays free as "no id"
_TABLE_SIZE = 65536
_SCALE_EXP_MIN, _SCALE_EXP_MAX = -12, 12

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_SCALAR_DATATYPES = frozenset({"boolean", "string", "float", "double", *_INT_RANGES})
VSS_DATATYPES = _SCALAR_DATATYPES | {f"{t}[]" for t in _SCALAR_DATATYPES}

_PATH_RE = re.compile(r"Vehicle(\.[A-Za-z0-9_]+)+")
_EVENT_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Session events pair by name: <x>_started with <x>_ended, and so on.
_SESSION_SUFFIXES = (("_started", "_ended"), ("_launched", "_closed"), ("_connected", "_disconnected"))


class _RowError(Exception):
    """One row is wrong; the loader adds file and line."""


@dataclass(frozen=True, slots=True)
class Signal:
    id: int
    path: str
    datatype: str
    unit: str
    min: float
    max: float
    scale_exp: int
    allowed: tuple[str, ...]
    description: str

    @property
    def is_enum(self) -> bool:
        return bool(self.allowed)


@dataclass(frozen=True, slots=True)
class EventType:
    id: int
    name: str
    value: str  # meaning of the integer attribute; "" when unused
    text: str  # meaning of the string attribute; "" when unused
    description: str


_T = TypeVar("_T")
_Table = npt.NDArray[Any]


def _index(items: Iterable[_T], key: Callable[[_T], Any], what: str) -> dict[Any, _T]:
    out: dict[Any, _T] = {}
    for item in items:
        k = key(item)
        if k in out:
            raise CatalogError(f"duplicate {what} {k!r}")
        out[k] = item
    return out


def _readonly(arr: _Table) -> _Table:
    arr.flags.writeable = False  # shared by every decode call; nobody may patch it
    return arr


@dataclass(frozen=True)
class SignalCatalog:
    signals: tuple[Signal, ...]
    known: npt.NDArray[np.bool_] = field(init=False, repr=False, compare=False)
    min_value: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)
    max_value: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)
    scale_exp: npt.NDArray[np.int8] = field(init=False, repr=False, compare=False)
    _by_id: dict[int, Signal] = field(init=False, repr=False, compare=False)
    _by_path: dict[str, Signal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        signals = tuple(self.signals)
        for sig in signals:
            try:
                _validate_signal(sig)
            except _RowError as exc:
                raise CatalogError(f"signal id {sig.id}: {exc}") from exc
        ids = [s.id for s in signals]
        known = np.zeros(_TABLE_SIZE, dtype=np.bool_)
        known[ids] = True
        # NaN for unknown ids: every comparison with NaN is False, so a range
        # check on an unknown id can never pass by accident.
        lo = np.full(_TABLE_SIZE, np.nan)
        lo[ids] = [s.min for s in signals]
        hi = np.full(_TABLE_SIZE, np.nan)
        hi[ids] = [s.max for s in signals]
        exp = np.zeros(_TABLE_SIZE, dtype=np.int8)
        exp[ids] = [s.scale_exp for s in signals]
        object.__setattr__(self, "signals", signals)
        object.__setattr__(self, "known", _readonly(known))
        object.__setattr__(self, "min_value", _readonly(lo))
        object.__setattr__(self, "max_value", _readonly(hi))
        object.__setattr__(self, "scale_exp", _readonly(exp))
        object.__setattr__(self, "_by_id", _index(signals, lambda s: s.id, "signal id"))
        object.__setattr__(self, "_by_path", _index(signals, lambda s: s.path, "signal path"))

    def __len__(self) -> int:
        return len(self.signals)

    def by_id(self, signal_id: int) -> Signal:
        try:
            return self._by_id[signal_id]
        except KeyError:
            raise KeyError(f"signal id {signal_id} is not in the signal catalog") from None

    def by_path(self, path: str) -> Signal:
        try:
            return self._by_path[path]
        except KeyError:
            raise KeyError(f"VSS path {path!r} is not in the signal catalog") from None

    def ids(self) -> npt.NDArray[np.uint16]:
        return np.array(sorted(self._by_id), dtype=np.uint16)


@dataclass(frozen=True)
class EventCatalog:
    events: tuple[EventType, ...]
    known: npt.NDArray[np.bool_] = field(init=False, repr=False, compare=False)
    session_pairs: tuple[tuple[EventType, EventType], ...] = field(init=False, repr=False, compare=False)
    _by_id: dict[int, EventType] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, EventType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        events = tuple(self.events)
        for ev in events:
            try:
                _validate_event(ev)
            except _RowError as exc:
                raise CatalogError(f"event id {ev.id}: {exc}") from exc
        by_name = _index(events, lambda e: e.name, "event name")
        for ev in events:
            if (problem := _orphan_problem(ev.name, by_name)) is not None:
                raise CatalogError(f"event id {ev.id}: {problem}")
        known = np.zeros(_TABLE_SIZE, dtype=np.bool_)
        known[[e.id for e in events]] = True
        pairs = tuple((e, by_name[_partner(e.name) or ""]) for e in events if _is_session_start(e.name))
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "known", _readonly(known))
        object.__setattr__(self, "session_pairs", pairs)
        object.__setattr__(self, "_by_id", _index(events, lambda e: e.id, "event id"))
        object.__setattr__(self, "_by_name", by_name)

    def __len__(self) -> int:
        return len(self.events)

    def by_id(self, event_id: int) -> EventType:
        try:
            return self._by_id[event_id]
        except KeyError:
            raise KeyError(f"event id {event_id} is not in the event catalog") from None

    def by_name(self, name: str) -> EventType:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"event {name!r} is not in the event catalog") from None


def _is_session_start(name: str) -> bool:
    return any(name.endswith(start) for start, _ in _SESSION_SUFFIXES)


def _orphan_problem(name: str, names: Mapping[str, object]) -> str | None:
    partner = _partner(name)
    if partner is None or partner in names:
        return None
    return f"session event {name!r} has no partner {partner!r} (sessions pair start and end events)"


def _partner(name: str) -> str | None:
    """The other half of a session event, or None for a one-off event."""
    for start, end in _SESSION_SUFFIXES:
        if name.endswith(start):
            return name.removesuffix(start) + end
        if name.endswith(end):
            return name.removesuffix(end) + start
    return None


# ---------------------------------------------------------------- validation


def _validate_id(value: int) -> None:
    if not ID_MIN <= value <= ID_MAX:
        raise _RowError(f"id {value} outside {ID_MIN}..{ID_MAX}")


def _wire_range(sig: Signal) -> tuple[float, float] | None:
    """The widest min..max the datatype can carry on the wire (None: unbounded float)."""
    if sig.datatype == "boolean":
        return (0, 1)
    if sig.datatype == "string":
        return (0, len(sig.allowed) - 1)
    return _INT_RANGES.get(sig.datatype)


def _validate_datatype(sig: Signal) -> None:
    if sig.datatype not in VSS_DATATYPES:
        raise _RowError(f"unknown datatype {sig.datatype!r} (VSS datatypes: {', '.join(sorted(VSS_DATATYPES))})")
    if sig.datatype.endswith("[]"):
        raise _RowError(f"array datatype {sig.datatype!r}: a sample carries one number")
    if sig.datatype == "string" and not sig.allowed:
        raise _RowError("string signal without allowed values: only enums can be sent as a number")
    if sig.allowed and sig.datatype != "string":
        raise _RowError(f"allowed values given for datatype {sig.datatype!r}; only string enums have them")
    if len(set(sig.allowed)) != len(sig.allowed) or "" in sig.allowed:
        raise _RowError("allowed values must be non-empty and unique")


def _validate_range(sig: Signal) -> None:
    if not (math.isfinite(sig.min) and math.isfinite(sig.max)):
        raise _RowError("min and max must be finite numbers")
    if sig.min > sig.max:
        raise _RowError(f"min {sig.min:g} > max {sig.max:g}")
    if not _SCALE_EXP_MIN <= sig.scale_exp <= _SCALE_EXP_MAX:
        raise _RowError(f"scale_exp {sig.scale_exp} outside {_SCALE_EXP_MIN}..{_SCALE_EXP_MAX}")
    if sig.datatype in ("boolean", "string"):
        # The gateway checks enums and booleans with the same min/max tables,
        # so the range must be exactly the set of valid codes.
        lo, hi = _wire_range(sig) or (0, 0)
        if (sig.min, sig.max) != (lo, hi) or sig.scale_exp != 0:
            raise _RowError(f"{'enum' if sig.allowed else 'boolean'} needs min {lo}, max {hi}, scale_exp 0")
        return
    bounds = _wire_range(sig)
    if bounds is not None:
        if sig.scale_exp < 0:
            raise _RowError(f"integer datatype {sig.datatype!r} cannot have negative scale_exp")
        if sig.min < bounds[0] or sig.max > bounds[1]:
            raise _RowError(f"min..max {sig.min:g}..{sig.max:g} exceeds {sig.datatype} {bounds[0]}..{bounds[1]}")


def _validate_signal(sig: Signal) -> None:
    _validate_id(sig.id)
    if not _PATH_RE.fullmatch(sig.path):
        raise _RowError(f"path {sig.path!r} is not a VSS path like Vehicle.Speed")
    _validate_datatype(sig)
    _validate_range(sig)
    if not sig.description:
        raise _RowError("description is empty")


def _validate_event(ev: EventType) -> None:
    _validate_id(ev.id)
    if not _EVENT_NAME_RE.fullmatch(ev.name):
        raise _RowError(f"event name {ev.name!r} must be snake_case, at most 64 characters")
    if not ev.description:
        raise _RowError("description is empty")


# ------------------------------------------------------------------- loading


def _read_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line of the row's start, {column: stripped text}); blank lines are skipped."""
    try:
        # utf-8-sig: spreadsheet programs save a BOM that would corrupt the first column name
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            problem = _header_problem([h.strip() for h in header], columns)
            if problem:
                raise CatalogError(f"{path}, line 1: {problem}")
            start = reader.line_num + 1
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise CatalogError(f"{path}, line {line}: {len(cells)} fields, header has {len(header)}")
                yield line, {h.strip(): c.strip() for h, c in zip(header, cells, strict=True)}
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc}") from exc
    except csv.Error as exc:
        raise CatalogError(f"{path}: not valid CSV: {exc}") from exc


def _header_problem(header: list[str], columns: tuple[str, ...]) -> str | None:
    missing = [c for c in columns if c not in header]
    unknown = [h for h in header if h not in columns]
    if missing or unknown:
        return f"header must be {','.join(columns)}; missing {missing}, unknown {unknown}"
    if len(set(header)) != len(header):
        return "header repeats a column"
    return None


def _int(fields: Mapping[str, str], column: str) -> int:
    try:
        return int(fields[column])
    except ValueError:
        raise _RowError(f"{column} {fields[column]!r} is not an integer") from None


def _float(fields: Mapping[str, str], column: str) -> float:
    try:
        return float(fields[column])
    except ValueError:
        raise _RowError(f"{column} {fields[column]!r} is not a number") from None


def _signal_from_fields(f: Mapping[str, str]) -> Signal:
    allowed = tuple(a.strip() for a in f["allowed"].split("|")) if f["allowed"] else ()
    return Signal(
        id=_int(f, "id"),
        path=f["path"],
        datatype=f["datatype"],
        unit=f["unit"],
        min=_float(f, "min"),
        max=_float(f, "max"),
        scale_exp=_int(f, "scale_exp"),
        allowed=allowed,
        description=f["description"],
    )


def _event_from_fields(f: Mapping[str, str]) -> EventType:
    return EventType(id=_int(f, "id"), name=f["name"], value=f["value"], text=f["text"], description=f["description"])


def _load_rows(
    path: Path,
    columns: tuple[str, ...],
    parse: Callable[[Mapping[str, str]], _T],
    validate: Callable[[_T], None],
    keys: Mapping[str, Callable[[_T], Any]],
) -> list[tuple[int, _T]]:
    """Parse and validate every row into (line, item); report the first problem with file and line."""
    items: list[tuple[int, _T]] = []
    seen: dict[tuple[str, Any], int] = {}
    for line, fields in _read_rows(path, columns):
        try:
            item = parse(fields)
            validate(item)
        except _RowError as exc:
            raise CatalogError(f"{path}, line {line}: {exc}") from exc
        for what, key in keys.items():
            first = seen.setdefault((what, key(item)), line)
            if first != line:
                raise CatalogError(f"{path}, line {line}: {what} {key(item)!r} already used on line {first}")
        items.append((line, item))
    if not items:
        raise CatalogError(f"{path}: catalog has no rows")
    return items


def load_signal_catalog(path: Path | None = None) -> SignalCatalog:
    path = DEFAULT_SIGNALS_PATH if path is None else Path(path)
    keys: dict[str, Callable[[Signal], Any]] = {"id": lambda s: s.id, "path": lambda s: s.path}
    rows = _load_rows(path, SIGNAL_COLUMNS, _signal_from_fields, _validate_signal, keys)
    return SignalCatalog(tuple(sig for _, sig in rows))


def load_event_catalog(path: Path | None = None) -> EventCatalog:
    path = DEFAULT_EVENTS_PATH if path is None else Path(path)
    keys: dict[str, Callable[[EventType], Any]] = {"id": lambda e: e.id, "name": lambda e: e.name}
    rows = _load_rows(path, EVENT_COLUMNS, _event_from_fields, _validate_event, keys)
    names = {ev.name: line for line, ev in rows}
    for line, ev in rows:
        if (problem := _orphan_problem(ev.name, names)) is not None:
            raise CatalogError(f"{path}, line {line}: {problem}")
    return EventCatalog(tuple(ev for _, ev in rows))


# ------------------------------------------------------------- VSS checking


def _vss_nodes(tree: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every node by dotted path; a node under a deprecated branch inherits its deprecation."""
    out: dict[str, Mapping[str, Any]] = {}
    stack: list[tuple[str, Mapping[str, Any], str]] = [(name, node, "") for name, node in tree.items()]
    while stack:
        path, node, inherited = stack.pop()
        deprecation = node.get("deprecation") or inherited
        out[path] = {**node, "deprecation": deprecation} if deprecation else node
        for name, child in (node.get("children") or {}).items():
            stack.append((f"{path}.{name}", child, deprecation))
    return out


def _leaf_problems(sig: Signal, node: Mapping[str, Any] | None) -> list[str]:
    if node is None:
        return ["path not in VSS"]
    if node.get("type") == "branch":
        return ["is a VSS branch, not a leaf"]
    problems = []
    if node.get("deprecation"):
        problems.append(f"deprecated in VSS: {node['deprecation']}")
    if node.get("datatype") != sig.datatype:
        problems.append(f"datatype {sig.datatype!r}, VSS has {node.get('datatype')!r}")
    if node.get("unit", "") != sig.unit:
        problems.append(f"unit {sig.unit!r}, VSS has {node.get('unit', '')!r}")
    vss_allowed = tuple(node.get("allowed") or ())
    if vss_allowed != sig.allowed:
        problems.append(f"allowed {'|'.join(sig.allowed)!r}, VSS has {'|'.join(vss_allowed)!r}")
    if not sig.allowed:  # an enum's min/max are indexes, not VSS values
        if "min" in node and sig.min < float(node["min"]):
            problems.append(f"min {sig.min:g} below VSS min {node['min']}")
        if "max" in node and sig.max > float(node["max"]):
            problems.append(f"max {sig.max:g} above VSS max {node['max']}")
    return problems


def check_against_vss(catalog: SignalCatalog, vss_json_path: Path) -> list[str]:
    """Problems between the catalog and a VSS JSON export; empty when they agree."""
    try:
        tree = json.loads(Path(vss_json_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{vss_json_path}: cannot read VSS tree: {exc}") from exc
    nodes = _vss_nodes(tree)
    return [
        f"id {sig.id} {sig.path}: {problem}"
        for sig in catalog.signals
        for problem in _leaf_problems(sig, nodes.get(sig.path))
    ]
