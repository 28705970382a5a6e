"""DBC signal -> catalog signal, with unit conversion (schemas/can/mapping.toml).

A mapping compiles against one manifest into three columns over its signal
rows: the catalog id (-1 when unmapped) and the factor and offset that turn
the DBC's physical value into the catalog's unit.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vehicle_ingest.can.manifest import Manifest
from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.errors import CatalogError

__all__ = ["CompiledMapping", "MappingRule", "compile_mapping", "load_mapping", "unit_conversion"]

# Spellings DBC files use for the catalog's units.
_UNIT_ALIASES = {
    "%": "percent",
    "pct": "percent",
    "degc": "celsius",
    "°c": "celsius",
    "c": "celsius",
    "deg c": "celsius",
    "kph": "km/h",
    "kmh": "km/h",
    "m/s2": "m/s^2",
    "m/s²": "m/s^2",
    "mps2": "m/s^2",
    "deg": "degrees",
    "°": "degrees",
    "1/min": "rpm",
    "u/min": "rpm",
    "volt": "v",
    "amp": "a",
}
# (from, to) -> (factor, offset): to = from * factor + offset.
_CONVERSIONS = {
    ("km", "m"): (1000.0, 0.0),
    ("m", "km"): (0.001, 0.0),
    ("mi", "m"): (1609.344, 0.0),
    ("mi", "km"): (1.609344, 0.0),
    ("m/s", "km/h"): (3.6, 0.0),
    ("mph", "km/h"): (1.609344, 0.0),
    ("km/h", "m/s"): (1 / 3.6, 0.0),
    ("g", "m/s^2"): (9.80665, 0.0),
    ("degf", "celsius"): (5 / 9, -160 / 9),
    ("kw", "w"): (1000.0, 0.0),
    ("w", "kw"): (0.001, 0.0),
    ("mv", "v"): (0.001, 0.0),
    ("ma", "a"): (0.001, 0.0),
    ("bar", "kpa"): (100.0, 0.0),
    ("psi", "kpa"): (6.894757293168361, 0.0),
    ("min", "s"): (60.0, 0.0),
    ("h", "s"): (3600.0, 0.0),
}


def _norm(unit: str) -> str:
    u = unit.strip().lower()
    return _UNIT_ALIASES.get(u, u)


def unit_conversion(dbc_unit: str, catalog_unit: str) -> tuple[float, float] | None:
    """(factor, offset) from a DBC unit to a catalog unit; None when no conversion is known."""
    src, dst = _norm(dbc_unit), _norm(catalog_unit)
    if src == dst or not src:  # a unitless DBC signal is taken in the catalog's unit
        return 1.0, 0.0
    return _CONVERSIONS.get((src, dst))


@dataclass(frozen=True, slots=True)
class MappingRule:
    message: str
    signal: str
    catalog: str  # VSS path of the catalog signal
    factor: float | None = None
    offset: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class CompiledMapping:
    catalog_id: np.ndarray  # int32 per manifest signal row, -1 when unmapped
    factor: np.ndarray  # float64
    offset: np.ndarray  # float64


def load_mapping(path: Path) -> list[MappingRule]:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the CAN mapping: {exc}") from exc
    rules = []
    for i, entry in enumerate(doc.get("signal", [])):
        missing = [k for k in ("message", "signal", "catalog") if not isinstance(entry.get(k), str)]
        unknown = set(entry) - {"message", "signal", "catalog", "factor", "offset"}
        if missing or unknown:
            raise CatalogError(f"{path}: signal entry {i + 1}: missing {missing} / unknown keys {sorted(unknown)}")
        rules.append(MappingRule(**entry))
    return rules


def compile_mapping(
    rules: list[MappingRule], manifest: Manifest, catalog: SignalCatalog, where: str
) -> CompiledMapping:
    """Resolve every rule against the manifest's signals and the catalog; each problem names the rule."""
    row_of = {name: i for i, name in enumerate(manifest.qualified_names())}
    catalog_id = np.full(manifest.n_signals, -1, dtype=np.int32)
    factor = np.ones(manifest.n_signals)
    offset = np.zeros(manifest.n_signals)
    for rule in rules:
        name = f"{rule.message}.{rule.signal}"
        if name not in row_of:
            left_out = next((why for why in manifest.skipped if why.startswith(f"{name}: ")), None)
            if left_out:
                raise CatalogError(f"{where}: {left_out}; no frame can carry it, so it is not decoded")
            raise CatalogError(f"{where}: {name} is not a signal of the model's DBC files")
        try:
            target = catalog.by_path(rule.catalog)
        except KeyError as exc:
            raise CatalogError(f"{where}: {name}: {exc.args[0]}") from None
        row = row_of[name]
        conv = unit_conversion(manifest.sig_unit[row], target.unit)
        if rule.factor is not None or rule.offset is not None:
            conv = (1.0 if rule.factor is None else rule.factor, 0.0 if rule.offset is None else rule.offset)
        if conv is None:
            raise CatalogError(
                f"{where}: {name}: no conversion from {manifest.sig_unit[row]!r} to {target.unit!r};"
                " give factor and offset"
            )
        catalog_id[row] = target.id
        factor[row], offset[row] = conv
    return CompiledMapping(catalog_id, factor, offset)
