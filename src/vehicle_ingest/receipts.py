"""Receipts: after the insert that holds a message returned, the gateway tells its head unit which seqs are settled.

The broker's PUBACK only says the broker holds a message (in memory, for mosquitto until its
next autosave). A receipt says the store holds it: only then may a head unit drop its own copy.
One receipt per VIN carries ranges of stored seqs and the seqs rejected for good, coalesced over
a short interval, on `vi/v1/<VIN>/receipt` (schemas/WIRE_FORMAT.md section 13):

    [version 1, kind 16, vin, [[first_seq, last_seq], ...], [[seq, reason], ...]]

Ranges are inclusive, ascending and disjoint. A redelivered copy of a stored message is
receipted again: receipts are idempotent, and a head unit that missed one just resends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from vehicle_ingest.codec import FORMAT_VERSION

__all__ = [
    "MAX_RECEIPT_ENTRIES",
    "RECEIPT_KIND",
    "Receipt",
    "ReceiptBook",
    "ReceiptError",
    "Verdicts",
    "decode_receipt",
    "encode_receipt",
    "message_identity",
    "receipt_topic",
    "seq_ranges",
]

RECEIPT_KIND = 16  # kinds 1-3 travel vehicle -> gateway; 16 and up gateway -> vehicle
_MAX_RECEIPT_BYTES = 256 * 1024
# Entries (ranges + rejections) per receipt: at most ~40 bytes each, so a receipt stays far under the
# 256 KiB a head unit must accept; more make several receipts.
MAX_RECEIPT_ENTRIES = 2000


class ReceiptError(ValueError):
    """A payload that is not a receipt of this version (a head unit ignores it and logs why)."""


def receipt_topic(vin: str) -> str:
    return f"vi/v1/{vin}/receipt"


@dataclass(frozen=True, slots=True)
class Receipt:
    vin: str
    stored: tuple[tuple[int, int], ...] = ()
    rejected: tuple[tuple[int, str], ...] = ()

    def covers(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.stored) or any(s == seq for s, _ in self.rejected)


# One packer per thread, its buffer kept: `msgpack.packb` allocates a fresh 256 KiB buffer per
# call, which the gateway's allocator settings (gateway/memory.py) give a mapping of its own.
_PACKERS = threading.local()


def encode_receipt(receipt: Receipt) -> bytes:
    stored = [[a, b] for a, b in receipt.stored]
    rejected = [[s, reason] for s, reason in receipt.rejected]
    packer = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer()
    payload: bytes = packer.pack([FORMAT_VERSION, RECEIPT_KIND, receipt.vin, stored, rejected])
    return payload


def decode_receipt(payload: bytes) -> Receipt:
    """The receipt in `payload`, or ReceiptError naming what is wrong with its shape."""
    if len(payload) > _MAX_RECEIPT_BYTES:
        raise ReceiptError(f"{len(payload)} bytes: more than {_MAX_RECEIPT_BYTES}")
    try:  # msgpack bounds every declared length by the payload's own length
        value = msgpack.unpackb(payload, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ReceiptError(f"not msgpack: {exc}") from exc
    if not (isinstance(value, list) and len(value) == 5):
        raise ReceiptError("not an array of 5")
    version, kind, vin, stored, rejected = value
    if version != FORMAT_VERSION or kind != RECEIPT_KIND:
        raise ReceiptError(f"version {version!r} kind {kind!r}: expected {FORMAT_VERSION} and {RECEIPT_KIND}")
    if not (isinstance(vin, str) and len(vin) == 17 and isinstance(stored, list) and isinstance(rejected, list)):
        raise ReceiptError("vin, stored or rejected has the wrong type")
    ranges = tuple(_pair(r, int, int) for r in stored)
    if any(a > b for a, b in ranges):
        raise ReceiptError("a stored range ends before it starts")
    return Receipt(vin, ranges, tuple(_pair(r, int, str) for r in rejected))


def _pair(item: object, first: type, second: type) -> tuple[Any, Any]:
    ok = isinstance(item, list) and len(item) == 2 and isinstance(item[0], first) and isinstance(item[1], second)
    if not ok or isinstance(item[0], bool) or (first is int and item[0] < 0):  # type: ignore[index]
        raise ReceiptError(f"expected [{first.__name__}, {second.__name__}], got {item!r}")
    return (item[0], item[1])  # type: ignore[index]


def message_identity(payload: bytes) -> tuple[str, int] | None:
    """(vin, seq) from a payload's header (schemas/WIRE_FORMAT.md section 3), or None when it has none.

    What a head unit keys its buffer by; reads five header elements, never the body.
    """
    unpacker = msgpack.Unpacker(max_buffer_size=len(payload) + 1)
    unpacker.feed(payload)
    try:
        if unpacker.read_array_header() != 6:
            return None
        _version, _kind, vin, seq = (unpacker.unpack() for _ in range(4))
    except (ValueError, msgpack.OutOfData, msgpack.FormatError, msgpack.StackError):
        return None
    if not (isinstance(vin, str) and isinstance(seq, int)) or isinstance(seq, bool) or seq < 0:
        return None
    return vin, seq


def seq_ranges(seqs: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ranges of the distinct values of `seqs` (uint64), ascending."""
    s = np.unique(np.asarray(seqs, dtype=np.uint64))
    if len(s) == 0:
        return []
    breaks = np.flatnonzero(np.diff(s) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(s) - 1]))
    return list(zip(s[starts].tolist(), s[ends].tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Per settled message of a batch: whose it is (the topic's VIN), its seq, and "" (stored) or the reason."""

    vin: np.ndarray  # 'S17'; b"" when the topic named no vehicle
    seq: np.ndarray  # uint64
    reason: np.ndarray  # object array of str: "" for stored (or already stored), else the rejection reason

    @classmethod
    def empty(cls) -> Verdicts:
        return cls(np.zeros(0, "S17"), np.zeros(0, np.uint64), np.zeros(0, object))

    def __add__(self, other: Verdicts) -> Verdicts:
        return Verdicts(
            np.concatenate((self.vin, other.vin)),
            np.concatenate((self.seq, other.seq)),
            np.concatenate((self.reason, other.reason)),
        )

    def __len__(self) -> int:
        return len(self.seq)


@dataclass
class ReceiptBook:
    """Settled seqs per VIN since the last drain: one receipt per VIN and interval, however many messages.

    Whole batches in, whole arrays out: `add` keeps each batch's stored (vin, seq) columns as they
    are, and `drain` sorts them all once and cuts them into ranges with numpy. At 1 M samples/s a
    loop per VIN and batch cost 15 µs per message, more than the receipt's publish.
    """

    _vins: list[np.ndarray] = field(default_factory=list)
    _seqs: list[np.ndarray] = field(default_factory=list)
    _rejected: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, verdicts: Verdicts) -> None:
        named = verdicts.vin != b""
        stored = named & (verdicts.reason == "")
        self._vins.append(verdicts.vin[stored])
        self._seqs.append(verdicts.seq[stored])
        refused = np.flatnonzero(named & ~stored)  # rare: one Python step each
        columns = (verdicts.vin[refused].tolist(), verdicts.seq[refused].tolist(), verdicts.reason[refused].tolist())
        for vin, seq, reason in zip(*columns, strict=True):
            self._rejected.setdefault(vin.decode("ascii", "replace"), []).append((seq, reason))

    def __len__(self) -> int:
        vins = np.unique(np.concatenate(self._vins)) if self._vins else np.zeros(0, "S17")
        return len({v.decode("ascii", "replace") for v in vins.tolist()} | self._rejected.keys())

    def drain(self) -> Iterator[tuple[str, bytes]]:
        """(topic, payload) of one receipt per VIN with anything settled; the book is empty afterwards."""
        ranges = _ranges_per_vin(self._vins, self._seqs)
        rejected = self._rejected
        self._vins, self._seqs, self._rejected = [], [], {}
        for vin in ranges.keys() | rejected.keys():
            stored, refused = ranges.get(vin, []), sorted(set(rejected.get(vin, ())))
            if not refused and len(stored) <= MAX_RECEIPT_ENTRIES:  # the usual case, without _split's lists
                yield receipt_topic(vin), encode_receipt(Receipt(vin, tuple(stored)))
                continue
            for receipt in _split(vin, stored, refused):
                yield receipt_topic(vin), encode_receipt(receipt)


def _ranges_per_vin(vins: list[np.ndarray], seqs: list[np.ndarray]) -> dict[str, list[tuple[int, int]]]:
    """vin -> inclusive ascending seq ranges, from every batch's stored columns in one sort."""
    if not vins:
        return {}
    vin, seq = np.concatenate(vins), np.concatenate(seqs).astype(np.uint64)
    if len(vin) == 0:
        return {}
    keys = _vin_keys(vin)
    order = np.lexsort((seq, keys[:, 2], keys[:, 1], keys[:, 0]))
    vin, seq = vin[order], seq[order]
    new_vin = np.r_[True, vin[1:] != vin[:-1]]
    keep = new_vin | np.r_[True, seq[1:] != seq[:-1]]  # a seq settled twice (a redelivery) counts once
    vin, seq, new_vin = vin[keep], seq[keep], new_vin[keep]
    starts = np.flatnonzero(new_vin | np.r_[True, seq[1:] - seq[:-1] != 1])
    ends = np.r_[starts[1:], len(seq)] - 1
    out: dict[str, list[tuple[int, int]]] = {}
    pairs = zip(vin[starts].tolist(), seq[starts].tolist(), seq[ends].tolist(), strict=True)
    for v, first, last in pairs:
        out.setdefault(v.decode("ascii", "replace"), []).append((first, last))
    return out


def _vin_keys(vin: np.ndarray) -> np.ndarray:
    """Three big-endian uint64 per 17-byte VIN, in the VINs' byte order: numbers sort 10x faster than bytes."""
    padded = np.zeros((len(vin), 24), np.uint8)
    padded[:, :17] = vin.view(np.uint8).reshape(len(vin), 17)
    return padded.view(">u8").astype(np.uint64)


def _split(vin: str, ranges: list[tuple[int, int]], refused: list[tuple[int, str]]) -> Iterator[Receipt]:
    """One receipt, or several of at most MAX_RECEIPT_ENTRIES entries each when a VIN settled that much."""
    entries = [(r, None) for r in ranges] + [(None, r) for r in refused]
    for lo in range(0, max(len(entries), 1), MAX_RECEIPT_ENTRIES):
        part = entries[lo : lo + MAX_RECEIPT_ENTRIES]
        yield Receipt(vin, tuple(r for r, _ in part if r), tuple(x for _, x in part if x))
