"""Holdouts: the audience members a campaign must not reach, so that their behaviour measures what it did.

Membership is a keyed hash, never a random draw or Python's `hash()` (salted per process):

    position(owner, tag) = BLAKE2b(tag + "\\x1f" + owner_id, key = salt, 8-byte digest) / 2**64
    held out            <=> position < share

- Stable: the same owner, tag and salt give the same answer in every process, on every machine, in the
  tag engine and in the simulator (both call this function), so an owner never flips between groups.
- Independent per tag: an owner held out of one audience is no more likely to be held out of another.
- Monotone in the share: raising a tag's share from 0.1 to 0.2 keeps every owner already held out,
  held out (and only adds owners); lowering it releases owners, never swaps them.
- Changing the salt reshuffles every audience: do it only to start all experiments afresh.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_SALT_BYTES", "held_out", "holdout_position"]

MAX_SALT_BYTES = 64  # BLAKE2b's key length at most
_SEPARATOR = "\x1f"  # the ASCII unit separator: owner ids refuse control characters, so no (tag, owner) pair aliases


def holdout_position(owner_id: str, tag: str, salt: str) -> float:
    """Where the owner falls in [0, 1) for this tag: uniform over owners, fixed for the salt."""
    key = salt.encode()
    if not 0 < len(key) <= MAX_SALT_BYTES:
        raise ValueError(f"the holdout salt must be 1 to {MAX_SALT_BYTES} bytes of UTF-8, got {len(key)}")
    digest = hashlib.blake2b(f"{tag}{_SEPARATOR}{owner_id}".encode(), key=key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def held_out(owner_id: str, tag: str, share: float, salt: str) -> bool:
    """True when the owner belongs to the tag's holdout (`share` of the audience, 0 = nobody)."""
    return share > 0 and holdout_position(owner_id, tag, salt) < share
