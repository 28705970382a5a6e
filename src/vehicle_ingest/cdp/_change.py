"""A tag change: the unit the CDP receives, with its deterministic identity, and its redaction."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIONS", "TagChange", "change_message_id", "moment_message_id", "redact"]

# "fired": a real-time moment (vehicle_ingest.moments), an event rather than a state: the tag engine's
# diff reads only "added" as present, so moments in the same outbox never look like tags to it.
ACTIONS = ("added", "removed", "fired")

# Fixed forever: every message id ever sent is derived from it, and the CDP
# deduplicates by message id. (It is uuid5(NAMESPACE_URL,
# "https://vehicle-ingest/cdp/tag-change"), written out so that nobody "fixes"
# the string and silently changes every id.)
_NAMESPACE = uuid.UUID("9aa8d29b-f7ca-5392-9ba4-3e5ffb69b2c8")

_PRIVATE_KEYS = frozenset({"vin", "latitude", "longitude", "lat", "lon", "lng"})
_LOCATION_KEYS = _PRIVATE_KEYS - {"vin"}
# 17 VIN characters (no I, O, Q) with at least one digit and one letter: real
# VINs have both (manufacturer letters, serial digits), and the rule spares
# words and numbers that merely happen to be 17 characters long.
_VIN = re.compile(r"(?=[A-Z]*[0-9])(?=[0-9]*[A-Z])[A-HJ-NPR-Z0-9]{17}")


def change_message_id(owner_id: str, tag: str, action: str, transition: int) -> str:
    """The message id of the `transition`-th change (0-based) of `tag` for `owner_id`.

    Recomputing the same change gives the same id (so a re-run never creates a
    second message); the next change of the same (owner, tag) gets a new one.
    """
    if action not in ("added", "removed"):
        raise ValueError(f"action must be added or removed, got {action!r}")
    if transition < 0:
        raise ValueError(f"transition must be >= 0, got {transition}")
    return str(uuid.uuid5(_NAMESPACE, f"{owner_id}|{tag}|{action}|{transition}"))


# uuid5(NAMESPACE_URL, "https://vehicle-ingest/cdp/moment"), written out for the same reason.
_MOMENT_NAMESPACE = uuid.UUID("8135996c-7c08-5cef-9b58-be1745480ea4")


def moment_message_id(owner_id: str, moment: str, vin: str, seq: int) -> str:
    """The message id of `moment` fired for `owner_id` by message `seq` of `vin`.

    A redelivered message (a crash between its insert and the outbox write) fires again with
    the same id, which the outbox and the CDP deduplicate: a moment is sent once.
    """
    return str(uuid.uuid5(_MOMENT_NAMESPACE, f"{owner_id}|{moment}|{vin}|{seq}"))


@dataclass(frozen=True)
class TagChange:
    """One owner gained or lost one tag.

    `evidence` holds JSON scalars explaining the change; `traits` is the
    owner's whole profile after it (what identify/profile_set carry).
    """

    message_id: str
    owner_id: str
    tag: str
    action: str
    evidence: dict[str, Any]
    traits: dict[str, Any]
    at_ms: int
    transition: int = 0  # changes the (owner, tag) pair had before this one: orders and identifies it
    holdout: bool = False  # the owner is in the tag's holdout: campaigns must leave them out (schemas/CDP.md)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; `from_json` reads it back."""
        return {
            "message_id": self.message_id,
            "owner_id": self.owner_id,
            "tag": self.tag,
            "action": self.action,
            "evidence": dict(self.evidence),
            "traits": dict(self.traits),
            "at_ms": self.at_ms,
            "transition": self.transition,
            "holdout": self.holdout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> TagChange:
        obj = json.loads(data) if isinstance(data, str | bytes) else data
        return cls(
            message_id=str(obj["message_id"]),
            owner_id=str(obj["owner_id"]),
            tag=str(obj["tag"]),
            action=str(obj["action"]),
            evidence=dict(obj.get("evidence") or {}),
            traits=dict(obj.get("traits") or {}),
            at_ms=int(obj["at_ms"]),
            transition=int(obj.get("transition", 0)),
            holdout=obj.get("holdout") is True,
        )


def redact(change: TagChange, allow_vin: bool) -> TagChange:
    """Drop VINs and coordinates from evidence and traits before they leave the store.

    Coordinates are removed even with `allow_vin`: location is personal data
    that must be coarsened (e.g. a region name) before it becomes evidence.
    """
    evidence = _clean(change.evidence, allow_vin)
    traits = _clean(change.traits, allow_vin)
    if evidence == change.evidence and traits == change.traits:
        return change
    return dataclasses.replace(change, evidence=evidence, traits=traits)


def _clean(fields: Mapping[str, Any], allow_vin: bool) -> dict[str, Any]:
    banned = _LOCATION_KEYS if allow_vin else _PRIVATE_KEYS
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key.lower() in banned:
            continue
        if isinstance(value, list | tuple):
            value = [v for v in value if allow_vin or not _looks_like_vin(v)]
        elif not allow_vin and _looks_like_vin(value):
            continue
        out[key] = value
    return out


def _looks_like_vin(value: Any) -> bool:
    return isinstance(value, str) and _VIN.fullmatch(value.strip().upper()) is not None
