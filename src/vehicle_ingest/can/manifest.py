"""DBC files compiled into flat numpy tables: the decoder manifest.

cantools parses the DBC; this module keeps only what decoding needs, one row
per message and one row per signal, so the numba kernel reads plain arrays.
A signal row is the tuple AWS IoT FleetWise calls a decoder manifest entry:
(message, start bit, length, byte order, signed, float, factor, offset,
min, max, multiplexer switch and values).

Signals the manifest leaves out, as cantools never returns them: those
outside cantools' signal tree, and those the DBC places (partly) beyond the
message's declared length (cantools refuses every frame of such a message; we
decode its other signals), with every signal gated by a switch left out.

Integer signals: where cantools returns a Python int (not a float signal,
integral factor and offset) and every raw value's result fits an int64,
`sig_integer` is set and the decoders give the exact value in an int64 column.

Multiplexing: a switch selects by its raw value, as in the DBC format and in
cantools' `scaling=False`. With `scaling=True`, cantools selects by
`int(raw * factor + offset)` instead; the two differ only for a switch with a
factor other than 1 or an offset other than 0 (none in opendbc): we keep the
raw rule, which gives one branch per switch value where the scaled rule may
merge or skip branches.

Bit positions are normalised at build time: `pos` is the least significant
bit for little-endian (Intel) signals and the most significant bit in
network order (bit 0 = MSB of byte 0) for big-endian (Motorola) signals, so
the kernel needs no sawtooth arithmetic. Within a message, signals are
ordered so that a multiplexer switch comes before every signal it gates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vehicle_ingest.can._tables import KernelTables, kernel_tables
from vehicle_ingest.errors import CatalogError

__all__ = [
    "EXTENDED_FLAG",
    "Manifest",
    "decodable_signals",
    "frame_key",
    "integer_conversion",
    "load_manifest",
    "manifest_from_database",
]

# Frame keys: the arbitration id, with bit 31 set for 29-bit (extended) ids, so 0x100
# standard and 0x100 extended are different messages, as on the bus.
EXTENDED_FLAG = np.uint32(1 << 31)


def frame_key(arb_id: np.ndarray, extended: np.ndarray) -> np.ndarray:
    """uint32 keys the manifest is sorted by."""
    ids = np.asarray(arb_id, dtype=np.uint32)
    return ids | np.where(np.asarray(extended, dtype=bool), EXTENDED_FLAG, np.uint32(0))


@dataclass(frozen=True, slots=True, eq=False)
class Manifest:
    """Messages sorted by `msg_key`; signals of message m are rows msg_first[m]:msg_first[m+1]."""

    msg_key: np.ndarray  # uint32, frame_key of the message
    msg_first: np.ndarray  # int32, n_messages + 1 offsets into the signal rows
    msg_length: np.ndarray  # int32, DBC length in bytes
    msg_name: tuple[str, ...]
    sig_pos: np.ndarray  # int32, LSB (little endian) or network-order MSB (big endian)
    sig_len: np.ndarray  # int32, 1..64 bits
    sig_big_endian: np.ndarray  # bool
    sig_signed: np.ndarray  # bool
    sig_float: np.ndarray  # bool, IEEE-754 binary32 (32 bits) or binary64 (64 bits)
    sig_factor: np.ndarray  # float64
    sig_offset: np.ndarray  # float64
    sig_min: np.ndarray  # float64, NaN when the DBC gives none
    sig_max: np.ndarray  # float64
    sig_bytes: np.ndarray  # int32, frame bytes needed: a shorter frame does not carry the signal
    sig_mux_parent: np.ndarray  # int32, row of the switch gating this signal, -1 when not multiplexed
    sig_mux_first: np.ndarray  # int32, n_signals + 1 offsets into mux_values
    mux_values: np.ndarray  # int64, switch raw values under which the signal is present
    sig_name: tuple[str, ...]  # DBC signal name
    sig_unit: tuple[str, ...]
    sig_message: np.ndarray  # int32, message row of each signal
    sources: tuple[str, ...]  # the DBC files, for messages
    sig_integer: np.ndarray  # bool, integer result (cantools returns an int) that fits an int64: see above
    sig_factor_int: np.ndarray  # int64, the factor of an integer signal (0 for the others)
    sig_offset_int: np.ndarray  # int64, the offset of an integer signal (0 for the others)
    skipped: tuple[str, ...]  # `Message.Signal: why` for the DBC's signals left out (see above)
    kernel: KernelTables  # derived for the numba kernel

    @property
    def n_messages(self) -> int:
        return len(self.msg_key)

    @property
    def n_signals(self) -> int:
        return len(self.sig_pos)

    def qualified_names(self) -> list[str]:
        """`Message.Signal` per signal row."""
        return [f"{self.msg_name[m]}.{s}" for m, s in zip(self.sig_message.tolist(), self.sig_name, strict=True)]


def network_msb(start: int) -> int:
    """DBC big-endian start bit (sawtooth numbering) to its network-order bit index."""
    return 8 * (start // 8) + (7 - start % 8)


def load_manifest(paths: Path | str | Sequence[Path | str]) -> Manifest:
    """Compile one DBC file, or several merged (a model's set), into a manifest."""
    import cantools  # imported here: the gateway imports this module even without CAN models

    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    databases = []
    for path in files:
        try:
            databases.append(cantools.database.load_file(str(path), database_format="dbc", strict=False))
        except Exception as exc:
            raise CatalogError(f"{path}: cantools cannot load it: {exc}") from exc
    return manifest_from_database(databases, tuple(str(p) for p in files))


def manifest_from_database(databases: Iterable[Any], sources: tuple[str, ...] = ()) -> Manifest:
    """Manifest of cantools `Database` objects; a frame id defined twice is an error naming both."""
    messages: dict[int, Any] = {}
    for db in databases:
        for msg in db.messages:
            key = int(frame_key(np.array([msg.frame_id]), np.array([msg.is_extended_frame]))[0])
            if key in messages:
                raise CatalogError(f"frame id 0x{msg.frame_id:x} is defined twice: {messages[key].name} and {msg.name}")
            messages[key] = msg
    return _build(sorted(messages.items()), sources)


def _gating_order(signals: Sequence[Any]) -> list[Any]:
    """Signals with every multiplexer switch before the signals it gates (depth, then DBC order)."""
    by_name = {s.name: s for s in signals}

    def depth(sig: Any) -> int:
        d, seen = 0, set()
        while sig.multiplexer_signal in by_name and sig.name not in seen:
            seen.add(sig.name)
            sig, d = by_name[sig.multiplexer_signal], d + 1
        return d

    return sorted(signals, key=depth)  # sorted() is stable


def _tree_names(tree: Any) -> set[str]:
    """Every signal name in a cantools signal tree (lists of names and {switch: {value: subtree}})."""
    names: set[str] = set()
    for node in tree:
        if isinstance(node, str):
            names.add(node)
            continue
        for switch, branches in node.items():
            names.add(switch)
            for subtree in branches.values():
                names |= _tree_names(subtree)
    return names


def _last_byte(sig: Any) -> int:
    """Index of the last frame byte the signal occupies."""
    pos = network_msb(sig.start) if sig.byte_order == "big_endian" else sig.start
    last: int = (pos + sig.length - 1) // 8
    return last


def decodable_signals(msg: Any) -> tuple[list[Any], list[str]]:
    """(the signals cantools decodes, `Signal: why` for the others).

    Left out: a signal gated by a switch the DBC never declares a multiplexer (`m` instead
    of `M`) is outside cantools' signal tree, and cantools never emits it; a signal the DBC
    places beyond the message's declared length makes cantools refuse every frame; and a
    signal whose switch is left out has nothing to select it.
    """
    in_tree = _tree_names(msg.signal_tree)
    kept: list[Any] = []
    skipped: dict[str, str] = {}
    for sig in _gating_order(msg.signals):  # switches first: a left-out switch is known before its signals
        if sig.name not in in_tree:
            continue
        if _last_byte(sig) >= msg.length:
            skipped[sig.name] = f"lies beyond the message's declared length of {msg.length} bytes"
        elif sig.multiplexer_signal in skipped:
            skipped[sig.name] = f"its multiplexer {sig.multiplexer_signal} is left out"
        else:
            kept.append(sig)
    return kept, [f"{name}: {why}" for name, why in skipped.items()]


def _int64(v: int) -> bool:
    return -(1 << 63) <= v < 1 << 63


def integer_conversion(sig: Any) -> tuple[int, int] | None:
    """(factor, offset) as ints when cantools returns an int for the signal and every result fits an int64.

    cantools returns an int exactly when the signal is not a float and factor and offset are
    integral (its `LinearIntegerConversion`, or the identity).
    """
    conv = sig.conversion
    integral = [isinstance(v, int) or (isinstance(v, float) and v.is_integer()) for v in (conv.scale, conv.offset)]
    if sig.is_float or not all(integral):
        return None
    factor, offset, n = int(conv.scale), int(conv.offset), sig.length
    lo, hi = (-(1 << (n - 1)), (1 << (n - 1)) - 1) if sig.is_signed else (0, (1 << n) - 1)
    if all(_int64(v) for v in (factor, offset, lo * factor + offset, hi * factor + offset)):
        return factor, offset
    return None


def _signal_row(sig: Any, message_row: int) -> dict[str, Any]:
    big = sig.byte_order == "big_endian"
    pos = network_msb(sig.start) if big else sig.start
    conv = sig.conversion
    exact = integer_conversion(sig)
    return {
        "pos": pos,
        "len": sig.length,
        "big": big,
        "signed": bool(sig.is_signed),
        "float": bool(sig.is_float),
        "factor": float(conv.scale),
        "offset": float(conv.offset),
        "integer": exact is not None,
        "factor_int": exact[0] if exact else 0,
        "offset_int": exact[1] if exact else 0,
        "min": np.nan if sig.minimum is None else float(sig.minimum),
        "max": np.nan if sig.maximum is None else float(sig.maximum),
        "bytes": _last_byte(sig) + 1,
        "name": sig.name,
        "unit": sig.unit or "",
        "message": message_row,
    }


_DTYPES = {
    "pos": np.int64,
    "len": np.int64,
    "big": bool,
    "signed": bool,
    "float": bool,
    "factor": np.float64,
    "offset": np.float64,
    "integer": bool,
    "factor_int": np.int64,
    "offset_int": np.int64,
    "min": np.float64,
    "max": np.float64,
    "bytes": np.int64,
    "message": np.int64,
    "parent": np.int64,
}


def _rows(messages: list[tuple[int, Any]]) -> tuple[list[dict[str, Any]], list[list[int]], list[int], list[str]]:
    """(signal rows, mux values per row, message offsets, skipped signals)."""
    rows: list[dict[str, Any]] = []
    mux_lists: list[list[int]] = []
    first = [0]
    skipped: list[str] = []
    for m, (_, msg) in enumerate(messages):
        kept, left_out = decodable_signals(msg)
        skipped += [f"{msg.name}.{why}" for why in left_out]
        row_of = {s.name: first[-1] + i for i, s in enumerate(kept)}
        for sig in kept:
            parent = row_of.get(sig.multiplexer_signal, -1) if sig.multiplexer_signal else -1
            rows.append(_signal_row(sig, m) | {"parent": parent})
            mux_lists.append([int(v) for v in (sig.multiplexer_ids or [])] if parent >= 0 else [])
        first.append(first[-1] + len(kept))
    return rows, mux_lists, first, skipped


def _build(messages: list[tuple[int, Any]], sources: tuple[str, ...]) -> Manifest:
    rows, mux_lists, first, skipped = _rows(messages)
    cols = {k: np.array([r[k] for r in rows], dtype=t) for k, t in _DTYPES.items()}
    mux_first = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in mux_lists], out=mux_first[1:])
    mux_values = np.array([v for vs in mux_lists for v in vs], dtype=np.int64)
    msg_key = np.array([k for k, _ in messages], dtype=np.uint32)
    msg_first = np.array(first, dtype=np.int32)
    tables = Manifest(
        msg_key=msg_key,
        msg_first=msg_first,
        msg_length=np.array([msg.length for _, msg in messages], dtype=np.int32),
        msg_name=tuple(msg.name for _, msg in messages),
        sig_pos=cols["pos"].astype(np.int32),
        sig_len=cols["len"].astype(np.int32),
        sig_big_endian=cols["big"],
        sig_signed=cols["signed"],
        sig_float=cols["float"],
        sig_factor=cols["factor"],
        sig_offset=cols["offset"],
        sig_min=cols["min"],
        sig_max=cols["max"],
        sig_bytes=cols["bytes"].astype(np.int32),
        sig_mux_parent=cols["parent"].astype(np.int32),
        sig_mux_first=mux_first,
        mux_values=mux_values,
        sig_name=tuple(r["name"] for r in rows),
        sig_unit=tuple(r["unit"] for r in rows),
        sig_message=cols["message"].astype(np.int32),
        sources=sources,
        sig_integer=cols["integer"],
        sig_factor_int=cols["factor_int"],
        sig_offset_int=cols["offset_int"],
        skipped=tuple(skipped),
        kernel=kernel_tables(msg_key, msg_first, cols, mux_first, mux_values),
    )
    _check(tables)
    return tables


def _check(m: Manifest) -> None:
    """What the kernel relies on: bit layouts inside 64 bytes, 1..64-bit signals, floats 32/64 bits."""
    for i in range(m.n_signals):
        where = f"{m.msg_name[m.sig_message[i]]}.{m.sig_name[i]}"
        if not 1 <= m.sig_len[i] <= 64 or m.sig_pos[i] < 0 or m.sig_bytes[i] > 64:
            raise CatalogError(f"{where}: bit layout pos={m.sig_pos[i]} len={m.sig_len[i]} is outside a 64-byte frame")
        if m.sig_float[i] and m.sig_len[i] not in (32, 64):
            raise CatalogError(f"{where}: a float signal must be 32 or 64 bits, got {m.sig_len[i]}")
