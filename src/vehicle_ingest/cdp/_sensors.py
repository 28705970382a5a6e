"""Sensors Analytics (神策): tag changes as profile records, POSTed as one JSON array per batch.

Mapping (also in schemas/CDP.md):
- added   -> `profile_set`   {"tag_<tag>": true, **evidence}
- removed -> `profile_unset` {"tag_<tag>": true}  (Sensors SDKs send `true` as
  the value of each property to unset; only the key matters)
- fired (a moment) -> `track` event `moment_fired` {"moment": "<moment id>", **evidence}
- a change of an owner held out of the tag (tags.toml `holdout`) also sets / unsets
  `tag_<tag>_holdout`, so a Sensors audience can leave them out
- `<tag>` and evidence keys have every character outside [A-Za-z0-9_] replaced
  by "_" (`adoption.voice.never_used` -> `tag_adoption_voice_never_used`),
  because Sensors property names must be identifiers.
- `_track_id`: a stable non-negative 31-bit int from the message id, the
  field Sensors deduplicates re-sent records by.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from vehicle_ingest.cdp._change import TagChange
from vehicle_ingest.cdp._http import HttpRequest, HttpSink, dumps

__all__ = ["SensorsSink", "sensors_record", "tag_property", "track_id"]

_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


class SensorsSink(HttpSink):
    """`sensors+https://host:port/path?project=NAME` (project defaults to "default", as in Sensors)."""

    def _requests(self, changes: Sequence[TagChange]) -> list[HttpRequest]:
        project = self._params.get("project", "default")
        return [HttpRequest(dumps([sensors_record(c, project) for c in changes]), {})]


def sensors_record(change: TagChange, project: str) -> dict[str, Any]:
    if change.action == "fired":  # a moment: an event on the owner's timeline
        return {
            "type": "track",
            "event": "moment_fired",
            "distinct_id": change.owner_id,
            "time": change.at_ms,
            "properties": {**{_identifier(k): v for k, v in change.evidence.items()}, "moment": change.tag},
            "project": project,
            "_track_id": track_id(change.message_id),
        }
    prop = tag_property(change.tag)
    held = {f"{prop}_holdout": True} if change.holdout else {}
    if change.action == "added":
        kind = "profile_set"
        properties = {**{_identifier(k): v for k, v in change.evidence.items()}, prop: True, **held}
    else:
        kind = "profile_unset"
        properties = {prop: True, **held}
    return {
        "type": kind,
        "distinct_id": change.owner_id,
        "time": change.at_ms,
        "properties": properties,
        "project": project,
        "_track_id": track_id(change.message_id),
    }


def tag_property(tag: str) -> str:
    return "tag_" + _identifier(tag)


def track_id(message_id: str) -> int:
    # 31 bits: Sensors SDKs generate _track_id as a Java int; stay in range.
    return int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:4], "big") & 0x7FFF_FFFF


def _identifier(name: str) -> str:
    cleaned = _NOT_IDENTIFIER.sub("_", name)
    return f"_{cleaned}" if cleaned[:1].isdigit() else cleaned
