"""An audience: the owners who hold a tag now, since when, and why, for a marketing team to act on.

The same source as the report's tag figures: the latest change per (owner, tag) in `tag_history`
(what the tag engine last decided), as of an instant. CSV cells a spreadsheet would run as a
formula (starting with =, +, -, @, tab or carriage return) are written with a leading quote.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vehicle_ingest.errors import ConfigError
from vehicle_ingest.reads import Queryable

__all__ = ["AudienceMember", "audience", "to_csv"]

_MEMBERS = """
    SELECT owner_id, toInt64(toUnixTimestamp64Milli(since)), evidence FROM (
        SELECT owner_id,
               argMax(action, (transition, enqueued_at)) AS last_action,
               argMax(at, (transition, enqueued_at)) AS since,
               argMax(evidence, (transition, enqueued_at)) AS evidence
        FROM tag_history FINAL
        WHERE tag = %(tag)s AND at <= fromUnixTimestamp64Milli(%(as_of)s, 'UTC')
        GROUP BY owner_id
    ) WHERE last_action = 'added' ORDER BY owner_id
"""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class AudienceMember:
    owner_id: str
    since_ms: int  # when the tag engine added the tag (its evaluation instant)
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"owner_id": self.owner_id, "since": _iso(self.since_ms), "evidence": self.evidence}


def audience(reader: Queryable, tag: str, as_of_ms: int, known_tags: frozenset[str]) -> list[AudienceMember]:
    if tag not in known_tags:
        raise ConfigError("tag", f"unknown tag {tag!r}; known: {', '.join(sorted(known_tags))}")
    rows = reader.rows(_MEMBERS, {"tag": tag, "as_of": as_of_ms})
    return [AudienceMember(owner, int(since), json.loads(evidence)) for owner, since, evidence in rows]


def to_csv(members: list[AudienceMember]) -> str:
    """owner_id,since,evidence (evidence as compact JSON), with formula-looking cells neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["owner_id", "since", "evidence"])
    for m in members:
        evidence = json.dumps(m.evidence, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        writer.writerow([_cell(m.owner_id), _iso(m.since_ms), _cell(evidence)])
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
