"""DBC files compiled into flat numpy tables: the decoder manifest.

cantools parses the DBC; this module keeps only what decoding needs, one row
per message and one row per signal, so the numba kernel reads plain arrays.
A signal row is the tuple AWS IoT FleetWise calls a decoder manifest entry:
(message, start bit, length, byte order, signed, float, factor, offset,
min, max, multiplexer switch and values).

Bit positions are normalised at build time: `pos` is the least significant
bit for little-endian (Intel) signals and the most significant bit in
network order (bit 0 = MSB of byte 0) for big-endian (Motorola) signals, so
the kernel needs no sawtooth arithmetic. Within a message, signals are
ordered so that a multiplexer switch comes before every signal it gates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from vehicle_ingest.errors import CatalogError

__all__ = ["EXTENDED_FLAG", "Manifest", "frame_key", "load_manifest", "manifest_from_database"]

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
    # Derived for the kernel. A classic frame (<= 8 bytes) is read as one 64-bit word, little-endian
    # and big-endian (`order`: all bits set for big endian picks the word without a branch), and a
    # signal is (word >> shift) & mask, shift = pos (little endian) or 64 - pos - len (big endian).
    sig_sext: np.ndarray  # int64, 64 - len for signed integer signals (sign extension by two shifts), else 0
    std_lookup: np.ndarray  # int32[2048], message row of each 11-bit id, -1 when none
    msg_need: np.ndarray  # int32, bytes a frame needs to carry every signal of the message
    msg_plain: np.ndarray  # bool, no multiplexing: a long enough frame yields every signal, in order
    # The plain-frame path's per-signal fields in one 64-byte row (one cache line per value instead of
    # nine): order, shift, mask, sext, length | signed << 8 | float << 9, factor bits, offset bits, 0.
    sig_record: np.ndarray  # uint64 (n_signals, 8)

    @property
    def n_messages(self) -> int:
        return len(self.msg_key)

    @property
    def n_signals(self) -> int:
        return len(self.sig_pos)

    def kernel_tables(self) -> tuple[np.ndarray, ...]:
        """The arrays the numba kernel reads, in its argument order."""
        return (
            self.msg_key,
            self.msg_first,
            self.sig_pos,
            self.sig_len,
            self.sig_big_endian,
            self.sig_signed,
            self.sig_float,
            self.sig_factor,
            self.sig_offset,
            self.sig_bytes,
            self.sig_mux_parent,
            self.sig_mux_first,
            self.mux_values,
            self.sig_sext,
            self.std_lookup,
            self.msg_need,
            self.msg_plain,
            self.sig_record,
        )

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


def decodable_signals(msg: Any) -> list[Any]:
    """The signals cantools decodes: those in its signal tree.

    A signal gated by a switch the DBC never declares a multiplexer (`m` instead of `M`)
    is outside the tree; cantools never emits it, and neither do we.
    """
    in_tree = _tree_names(msg.signal_tree)
    return [s for s in msg.signals if s.name in in_tree]


def _signal_row(sig: Any, message_row: int) -> dict[str, Any]:
    big = sig.byte_order == "big_endian"
    pos = network_msb(sig.start) if big else sig.start
    last_bit = pos + sig.length - 1
    conv = sig.conversion
    return {
        "pos": pos,
        "len": sig.length,
        "big": big,
        "signed": bool(sig.is_signed),
        "float": bool(sig.is_float),
        "factor": float(conv.scale),
        "offset": float(conv.offset),
        "min": np.nan if sig.minimum is None else float(sig.minimum),
        "max": np.nan if sig.maximum is None else float(sig.maximum),
        "bytes": last_bit // 8 + 1,
        "name": sig.name,
        "unit": sig.unit or "",
        "message": message_row,
    }


def _build(messages: list[tuple[int, Any]], sources: tuple[str, ...]) -> Manifest:
    rows: list[dict[str, Any]] = []
    parents: list[int] = []
    mux_lists: list[list[int]] = []
    first = [0]
    for m, (_, msg) in enumerate(messages):
        ordered = _gating_order(decodable_signals(msg))
        row_of = {s.name: first[-1] + i for i, s in enumerate(ordered)}
        for sig in ordered:
            rows.append(_signal_row(sig, m))
            parent = row_of.get(sig.multiplexer_signal, -1) if sig.multiplexer_signal else -1
            parents.append(parent)
            mux_lists.append([int(v) for v in (sig.multiplexer_ids or [])] if parent >= 0 else [])
        first.append(first[-1] + len(ordered))

    def col(name: str, dtype: Any) -> np.ndarray:
        return np.array([r[name] for r in rows], dtype=dtype)

    pos, length, big = col("pos", np.int64), col("len", np.int64), col("big", bool)
    shift = np.where(big, 64 - pos - length, pos)
    shift = np.where((col("bytes", np.int64) <= 8) & (shift >= 0), shift, 0).astype(np.uint64)
    mask = np.where(
        length >= 64, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << length.astype(np.uint64)) - np.uint64(1)
    )
    keys = np.array([k for k, _ in messages], dtype=np.int64)
    std_lookup = np.full(2048, -1, dtype=np.int32)
    std = keys < 2048
    std_lookup[keys[std]] = np.flatnonzero(std)
    order = np.where(big, np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(0)).astype(np.uint64)
    sext = np.where(col("signed", bool) & ~col("float", bool), 64 - length, 0).astype(np.int64)
    record = np.zeros((len(rows), 8), dtype=np.uint64)
    record[:, 0], record[:, 1], record[:, 2], record[:, 3] = order, shift, mask, sext.astype(np.uint64)
    flags = length | (col("signed", np.int64) << 8) | (col("float", np.int64) << 9)
    record[:, 4] = flags.astype(np.uint64)
    record[:, 5] = col("factor", np.float64).view(np.uint64)
    record[:, 6] = col("offset", np.float64).view(np.uint64)
    sig_bytes, parent_col = col("bytes", np.int64), np.array(parents, dtype=np.int64)
    msg_need = np.array([sig_bytes[a:b].max(initial=0) for a, b in pairwise(first)], np.int32)
    msg_plain = np.array([(parent_col[a:b] < 0).all() for a, b in pairwise(first)], bool)
    mux_first = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in mux_lists], out=mux_first[1:])
    tables = Manifest(
        msg_key=np.array([k for k, _ in messages], dtype=np.uint32),
        msg_first=np.array(first, dtype=np.int32),
        msg_length=np.array([msg.length for _, msg in messages], dtype=np.int32),
        msg_name=tuple(msg.name for _, msg in messages),
        sig_pos=col("pos", np.int32),
        sig_len=col("len", np.int32),
        sig_big_endian=col("big", bool),
        sig_signed=col("signed", bool),
        sig_float=col("float", bool),
        sig_factor=col("factor", np.float64),
        sig_offset=col("offset", np.float64),
        sig_min=col("min", np.float64),
        sig_max=col("max", np.float64),
        sig_bytes=col("bytes", np.int32),
        sig_mux_parent=np.array(parents, dtype=np.int32),
        sig_mux_first=mux_first,
        mux_values=np.array([v for vs in mux_lists for v in vs], dtype=np.int64),
        sig_name=tuple(r["name"] for r in rows),
        sig_unit=tuple(r["unit"] for r in rows),
        sig_message=col("message", np.int32),
        sources=sources,
        sig_sext=sext,
        sig_record=record,
        std_lookup=std_lookup,
        msg_need=msg_need,
        msg_plain=msg_plain,
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
