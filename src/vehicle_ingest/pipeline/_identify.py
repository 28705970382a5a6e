"""Identity stage: which accepted messages are new, which the store (or a batch on its way there) already holds.

A message's identity is (VIN, seq). It is compared per table it writes, by its rows there and
their earliest timestamp: none stored means new (insert), the same means a redelivery (skip, ack,
receipt), anything else means the head unit reused a seq for other content (`seq_reused`). A CAN
message may have reached one table and not the other (a retry after a partial insert): only the
missing table is written. Copies within one batch are judged against the batch's first copy.

`PendingIdentities` holds what batches planned but not yet committed will write: the gateway
plans batch N+1 while batch N is being inserted, and N's identities count as stored for N+1.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vehicle_ingest.pipeline._batch import TABLES, Decoded, RowCounts
from vehicle_ingest.validate import Reason

__all__ = ["IdentityLookup", "PendingIdentities", "Plan", "identify"]

Key = tuple[bytes, int]


class IdentityLookup(Protocol):
    """What the store holds per identity in one table: (rows, earliest ts in ms) for each, (0, 0) when none."""

    def stored_identities(
        self, table: str, vins: Sequence[str], vin_index: np.ndarray, seq: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def holds_rows(self, table: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Plan:
    reason: np.ndarray  # uint8 Reason per message, seq_reused added
    need: dict[str, np.ndarray]  # table -> bool per message: write its rows there now
    fresh: np.ndarray  # bool: a new message (stored by this batch)
    vins: list[str]  # distinct VINs of the batch
    vin_index: np.ndarray  # int32 per message, into `vins`
    counts: RowCounts  # what each message writes, per table
    relied: frozenset[Key]  # judged already stored only because a batch not yet committed holds them

    @property
    def accepted(self) -> np.ndarray:
        ok: np.ndarray = self.reason == Reason.OK
        return ok

    def keys(self, mask: np.ndarray, decoded: Decoded) -> list[Key]:
        m = decoded.messages
        return list(zip(m.vin[mask].tolist(), m.seq[mask].tolist(), strict=True))


class PendingIdentities:
    """Identities planned batches will write, by batch, until the batch's commit returns (thread-safe).

    A batch never relies on its own holds: its replan, and the narrowing down of a batch the store
    refused, look past them (`get(keys, owner)`), while every other batch sees them as stored.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Key, tuple[int, tuple[tuple[int, int], ...]]] = {}
        self._keys: dict[int, list[Key]] = {}

    def hold(self, owner: int, keys: list[Key], rows: list[tuple[tuple[int, int], ...]]) -> None:
        """What batch `owner` writes, replacing what it held before."""
        with self._lock:
            self._drop(owner)
            self._held.update((k, (owner, r)) for k, r in zip(keys, rows, strict=True))
            self._keys[owner] = keys

    def release(self, owner: int) -> list[Key]:
        """Forget batch `owner`'s identities (it committed, or will not); returns them."""
        with self._lock:
            return self._drop(owner)

    def get(self, keys: list[Key], owner: int) -> list[tuple[tuple[int, int], ...] | None]:
        """Per key, the rows another batch than `owner` will write, or None."""
        with self._lock:
            found = (self._held.get(k) for k in keys)
            return [h[1] if h is not None and h[0] != owner else None for h in found]

    def __len__(self) -> int:
        return len(self._held)

    def _drop(self, owner: int) -> list[Key]:
        keys = self._keys.pop(owner, [])
        for key in keys:
            if (held := self._held.get(key)) is not None and held[0] == owner:
                del self._held[key]
        return keys


def identify(
    decoded: Decoded, reason: np.ndarray, lookup: IdentityLookup, pending: PendingIdentities, owner: int
) -> Plan:
    """The plan of batch `owner` for `decoded`; `reason` (from validation) is not modified."""
    m = decoded.messages
    reason = reason.copy()
    distinct, inverse = np.unique(m.vin, return_inverse=True)
    vin_index = inverse.reshape(-1).astype(np.int32)
    vins = [v.decode("ascii", "replace") for v in distinct.tolist()]
    counts = RowCounts.of(decoded)
    first = _first_copies(vin_index, m.seq, reason, counts)
    cand = np.flatnonzero((reason == Reason.OK) & first)
    have, relied = _stored(decoded, cand, vins, vin_index, lookup, pending, owner)
    conflict = np.zeros(len(cand), dtype=bool)
    for t in TABLES:
        want_n, want_ts = counts.count[t][cand], counts.ts_min[t][cand]
        conflict |= (have[t][0] > 0) & ((have[t][0] != want_n) | (have[t][1] != want_ts))
    reason[cand[conflict]] = Reason.SEQ_REUSED
    ok = cand[~conflict]
    need = {t: _mask(len(m), ok[(have[t][0][~conflict] == 0) & (counts.count[t][ok] > 0)]) for t in TABLES}
    nothing_stored = np.all([have[t][0][~conflict] == 0 for t in TABLES], axis=0)
    fresh = _mask(len(m), ok[nothing_stored]) | np.any([need[t] for t in TABLES], axis=0)
    return Plan(reason, need, fresh, vins, vin_index, counts, frozenset(relied))


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _first_copies(vin_index: np.ndarray, seq: np.ndarray, reason: np.ndarray, counts: RowCounts) -> np.ndarray:
    """The first accepted copy of each identity; a later copy with other rows becomes `seq_reused` in `reason`.

    Only accepted messages compete: a rejected one (a VIN not matching its topic, say) never shadows a valid one.
    """
    ok = np.flatnonzero(reason == Reason.OK)
    keys = np.empty(len(ok), dtype=[("v", np.int64), ("s", np.uint64)])
    keys["v"], keys["s"] = vin_index[ok], seq[ok]
    _, first_pos, inverse = np.unique(keys, return_index=True, return_inverse=True)
    first = np.zeros(len(reason), dtype=bool)
    first[ok[first_pos]] = True
    original = ok[first_pos][inverse.reshape(-1)]
    differs = np.zeros(len(ok), dtype=bool)
    for t in TABLES:
        count, ts_min = counts.count[t], counts.ts_min[t]
        differs |= (count[ok] != count[original]) | (ts_min[ok] != ts_min[original])
    reason[ok[differs]] = Reason.SEQ_REUSED
    return first


def _stored(
    decoded: Decoded,
    cand: np.ndarray,
    vins: list[str],
    vin_index: np.ndarray,
    lookup: IdentityLookup,
    pending: PendingIdentities,
    owner: int,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[Key]]:
    """(rows, earliest ts) each candidate has in each table: what a batch on its way will have written, else
    what the store holds.

    Pending identities are read before the store: a batch that commits in between released its
    identities only after its inserts returned, so what it wrote is then in the store. (Read after,
    an identity released meanwhile would be found in neither.) A held identity is taken from the
    batch holding it even when the store holds part of it: that batch is writing the rest.
    """
    m = decoded.messages
    keys = list(zip(m.vin[cand].tolist(), m.seq[cand].tolist(), strict=True))
    held = pending.get(keys, owner)
    have = {}
    for t in TABLES:
        if len(cand) and (t != "can_signals" or len(decoded.can) or lookup.holds_rows(t)):
            have[t] = lookup.stored_identities(t, vins, vin_index[cand], m.seq[cand])
        else:  # a fleet without raw CAN never pays for looking in can_signals
            have[t] = (np.zeros(len(cand), np.int64), np.zeros(len(cand), np.int64))
    relied = []
    for j, (key, rows) in enumerate(zip(keys, held, strict=True)):
        if rows is not None:
            relied.append(key)
            for t, (n, ts) in zip(TABLES, rows, strict=True):
                have[t][0][j], have[t][1][j] = n, ts
    return have, relied
