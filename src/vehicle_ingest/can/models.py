"""Vehicle models -> DBC sets (schemas/can/models.toml), and batch decoding of CAN messages.

One gateway serves many car lines: each VIN is decoded with the model whose
longest VIN prefix matches, using that model's merged DBC manifest and its
catalog mapping. `CanDecoder.decode` turns a decoded CAN batch into mapped
catalog samples and unmapped DBC-named values, as numpy columns.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vehicle_ingest._resources import schema_path
from vehicle_ingest._twins import decode_frames
from vehicle_ingest.can._types import SignalValues
from vehicle_ingest.can.manifest import Manifest, frame_key, load_manifest
from vehicle_ingest.can.mapping import CompiledMapping, compile_mapping, load_mapping
from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.codec import CanBatch
from vehicle_ingest.errors import CatalogError

__all__ = ["CanDecoder", "CanModel", "CanValues", "default_models_path"]


def default_models_path() -> Path:
    return schema_path("can", "models.toml")


@dataclass(frozen=True, slots=True, eq=False)
class CanModel:
    name: str
    vin_prefixes: tuple[str, ...]
    manifest: Manifest
    mapping: CompiledMapping
    names: tuple[str, ...]  # `Message.Signal` per manifest signal row


@dataclass(frozen=True, slots=True, eq=False)
class CanValues:
    """Decoded values of a CAN batch; `msg` indexes the batch's messages."""

    msg: np.ndarray  # int32, mapped rows
    signal_id: np.ndarray  # uint16, catalog id
    ts: np.ndarray  # int64 ms
    value: np.ndarray  # float64, in the catalog's unit
    u_msg: np.ndarray  # int32, unmapped rows
    u_name: np.ndarray  # int32, index into `names`
    u_ts: np.ndarray  # int64
    u_value: np.ndarray  # float64, in the DBC's unit
    names: list[str]  # DBC `Message.Signal` names of the unmapped rows
    model: np.ndarray  # int32 per message, -1 when no model matches its VIN
    frames: int  # frames of messages with a model
    unknown_frames: int  # of those, frames whose id no DBC of the model defines
    # Exact values of integer DBC signals (see `vehicle_ingest.can.manifest`): `u_value` is float64 and
    # rounds past 2**53. Mapped rows have none: a catalog signal is a float in the catalog's unit.
    u_integer: np.ndarray  # int64 per unmapped row: the exact value where `u_is_integer`, else 0
    u_is_integer: np.ndarray  # bool per unmapped row: the signal is an integer signal


def _model(entry: dict[str, Any], folder: Path, catalog: SignalCatalog, index: int) -> CanModel:
    where = f"{folder / 'models.toml'}: model {entry.get('name', index + 1)}"
    try:
        name, prefixes, dbcs, mapping = entry["name"], entry["vin_prefixes"], entry["dbc"], entry["mapping"]
    except KeyError as exc:
        raise CatalogError(f"{where}: missing key {exc.args[0]}") from None
    if not prefixes or not all(isinstance(p, str) and p for p in prefixes):
        raise CatalogError(f"{where}: vin_prefixes must be a non-empty list of non-empty strings")
    manifest = load_manifest([folder / d for d in dbcs])
    compiled = compile_mapping(load_mapping(folder / mapping), manifest, catalog, f"{folder / mapping}")
    return CanModel(name, tuple(prefixes), manifest, compiled, tuple(manifest.qualified_names()))


class CanDecoder:
    """The configured models; decodes CAN batches into catalog and DBC-named columns."""

    def __init__(self, models: list[CanModel]) -> None:
        self.models = models
        prefixes = [(p, i) for i, m in enumerate(models) for p in m.vin_prefixes]
        self._prefixes = sorted(prefixes, key=lambda x: -len(x[0]))  # longest first
        self._name_base = np.cumsum([0] + [len(m.names) for m in models])
        self.names = [n for m in models for n in m.names]

    @classmethod
    def load(cls, path: Path, catalog: SignalCatalog) -> CanDecoder:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CatalogError(f"{path}: cannot read the CAN models: {exc}") from exc
        return cls([_model(e, path.parent, catalog, i) for i, e in enumerate(doc.get("model", []))])

    def model_of(self, vin: str) -> int:
        return next((i for prefix, i in self._prefixes if vin.startswith(prefix)), -1)

    def decode(self, batch: CanBatch) -> CanValues:
        m, f = batch.messages, batch.frames
        vins = [v.decode("ascii", "replace") for v in m.vin.tolist()]
        model = np.array([self.model_of(v) for v in vins], dtype=np.int32)
        parts, frames, unknown = [], 0, 0
        for i, spec in enumerate(self.models):
            mine = np.flatnonzero(model[f.msg] == i)
            if len(mine) == 0:
                continue
            frames += len(mine)
            keys = frame_key(f.arb_id[mine], f.extended[mine])
            data = _gather(f.data, f.data_start[mine], f.length[mine])
            values = decode_frames(spec.manifest, keys, data, f.length[mine])
            unknown += values.unknown_frames
            parts.append((i, mine[values.frame], values))
        return self._columns(parts, batch, model, frames, unknown)

    def _columns(
        self,
        parts: list[tuple[int, np.ndarray, SignalValues]],
        batch: CanBatch,
        model: np.ndarray,
        frames: int,
        unknown: int,
    ) -> CanValues:
        f = batch.frames
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("msg", "sid", "ts", "val", "umsg", "uname", "uts", "uval")}
        cols |= {"uint": [], "uisint": []}
        for i, frame_rows, values in parts:
            mp = self.models[i].mapping
            cid = mp.catalog_id[values.signal]
            hit = cid >= 0
            rows = frame_rows
            cols["msg"].append(f.msg[rows[hit]])
            cols["sid"].append(cid[hit].astype(np.uint16))
            cols["ts"].append(f.ts[rows[hit]])
            cols["val"].append(values.value[hit] * mp.factor[values.signal[hit]] + mp.offset[values.signal[hit]])
            cols["umsg"].append(f.msg[rows[~hit]])
            cols["uname"].append((values.signal[~hit] + self._name_base[i]).astype(np.int32))
            cols["uts"].append(f.ts[rows[~hit]])
            cols["uval"].append(values.value[~hit])
            cols["uint"].append(values.integer[~hit])
            cols["uisint"].append(self.models[i].manifest.sig_integer[values.signal[~hit]])
        dtypes: dict[str, type[np.generic]] = {"msg": np.int32, "sid": np.uint16, "ts": np.int64, "val": np.float64}
        dtypes |= {"umsg": np.int32, "uname": np.int32, "uts": np.int64, "uval": np.float64}
        dtypes |= {"uint": np.int64, "uisint": np.bool_}
        out = {k: np.concatenate(v) if v else np.zeros(0, dtypes[k]) for k, v in cols.items()}
        return CanValues(
            out["msg"],
            out["sid"],
            out["ts"],
            out["val"],
            out["umsg"],
            out["uname"],
            out["uts"],
            out["uval"],
            self.names,
            model,
            frames,
            unknown,
            out["uint"],
            out["uisint"],
        )


def _gather(data: npt.NDArray[np.uint8], start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The data bytes of the chosen frames, back to back (vectorized, no per-frame Python)."""
    length = length.astype(np.int64)
    total = int(length.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    out_start = np.cumsum(length) - length
    idx: npt.NDArray[np.int64] = (
        np.arange(total) - np.repeat(out_start, length) + np.repeat(start.astype(np.int64), length)
    )
    return data[idx]
