"""Campaign exposures as the marketing side reports them: Segment `track` events, Sensors Analytics events,
or rows of a CSV / JSON export; each one checked, the bad ones refused with a reason.

Accepted shapes (schemas/CDP.md, "Exposures coming back"):
- Segment: one `track` event, a JSON list of them, or `{"batch": [...]}` (the HTTP tracking API's body).
  The event name must be one of the configured exposure events (default "Campaign Exposed",
  "Experiment Viewed"); other events are ignored, not refused, because a CDP destination forwards
  everything. `userId` is the owner id, `messageId` the identity, `timestamp` (else
  `originalTimestamp`) the moment, `properties.campaign_id` (else `experiment_id`) the campaign,
  `properties.variant` (else `variation_id`, `variation_name`) the variant.
- Sensors Analytics: objects with `distinct_id` (the owner id), `type: "track"`, `event`, `time`
  (Unix ms) and `properties` as above; one JSON object per line, or a JSON list. Sensors has no
  message id, so the identity is a hash of what identifies a record (distinct_id, event, time,
  `_track_id`, campaign): a redelivered record gets the same one.
- Our own flat rows (`vehicle-ingest exposures FILE`, or `{"exposures": [...]}` over HTTP): `owner_id`,
  `campaign_id`, `exposed_at` (ISO 8601, UTC without an offset, or Unix ms), optional `variant`, `event`
  and `message_id` (without one: a hash of the row, so loading a file twice stores it once).

Every id is text of 1 to 256 characters with no control, separator or invisible character, neither
starting nor ending with a space: the owner-id rules of vehicle_ingest.owners. A moment must lie
between 2000-01-01 and a day after the receiver's clock. One event's JSON may be 32 KB (Segment's limit).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vehicle_ingest.errors import ConfigError
from vehicle_ingest.owners import check_person_id

__all__ = [
    "DEFAULT_EXPOSURE_EVENTS",
    "MAX_EVENT_BYTES",
    "Exposure",
    "ParsedExposures",
    "Refusal",
    "parse_exposure_body",
    "parse_exposure_file",
    "parse_exposure_rows",
]

DEFAULT_EXPOSURE_EVENTS = ("Campaign Exposed", "Experiment Viewed")
MAX_EVENT_BYTES = 32_000  # Segment's per-message limit: a bigger "exposure" is not one
MAX_SHOWN_REFUSALS = 50  # a request with 10,000 bad rows is one mistake repeated
_FIRST_MS = 946_684_800_000  # 2000-01-01
_AHEAD_MS = 86_400_000  # clock skew a sender may have
_CAMPAIGN_KEYS = ("campaign_id", "experiment_id")
_VARIANT_KEYS = ("variant", "variation_id", "variation_name")
_FLAT_KEYS = frozenset({"message_id", "owner_id", "campaign_id", "variant", "exposed_at", "event"})


@dataclass(frozen=True, slots=True)
class Exposure:
    message_id: str
    owner_id: str
    campaign_id: str
    variant: str
    event: str
    source: str  # "segment" | "sensors" | "file"
    exposed_at_ms: int

    def to_row(self) -> dict[str, Any]:
        """As a flat row (`{"exposures": [...]}`), which parses back to the same exposure."""
        return {
            "message_id": self.message_id,
            "owner_id": self.owner_id,
            "campaign_id": self.campaign_id,
            "variant": self.variant,
            "event": self.event,
            "exposed_at": self.exposed_at_ms,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # 0-based position in the request or file (a CSV row's line is index + 2)
    reason: str  # a short code, e.g. bad_owner_id
    detail: str  # what is wrong, never the offending value itself (it may be huge, or a terminal escape)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "detail": self.detail}


@dataclass
class ParsedExposures:
    exposures: list[Exposure] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    ignored: int = 0  # track events of other names

    def summary(self) -> dict[str, Any]:
        return {
            "accepted": len(self.exposures),
            "ignored": self.ignored,
            "refused": len(self.refused),
            "problems": [r.to_json() for r in self.refused[:MAX_SHOWN_REFUSALS]],
        }


class _Bad(Exception):  # noqa: N818 (internal: one event's problem, reported as a Refusal)
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class _Ignored(Exception):  # noqa: N818 (internal: an event that is not an exposure)
    pass


# -- values ----------------------------------------------------------------------------------------------


def _identifier(value: Any, field_name: str, required: bool = True) -> str:
    """Text under the owner-id rules; the problem names the field, never echoes the value."""
    if value is None or value == "":
        if required:
            raise _Bad(f"missing_{field_name}", f"{field_name} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Bad(f"bad_{field_name}", f"{field_name} is a {type(value).__name__}, not text")
    try:
        return check_person_id(str(value), field_name, "exposure")
    except ConfigError as exc:
        raise _Bad(f"bad_{field_name}", exc.problem) from exc


def _moment_ms(value: Any, field_name: str, now_ms: int) -> int:
    if isinstance(value, bool) or value is None or value == "":
        raise _Bad("bad_timestamp", f"{field_name} is missing")
    if isinstance(value, int | float):
        ms = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        ms = int(value.strip())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise _Bad("bad_timestamp", f"{field_name} is not an ISO 8601 date-time or Unix milliseconds") from exc
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
    else:
        raise _Bad("bad_timestamp", f"{field_name} is a {type(value).__name__}, not a date-time")
    if not _FIRST_MS <= ms <= now_ms + _AHEAD_MS:
        raise _Bad("bad_timestamp", f"{field_name} is before 2000 or more than a day ahead of the receiver's clock")
    return ms


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) not in (None, "")), None)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, ensure_ascii=False).encode()).hexdigest()[:32]


# -- one event ---------------------------------------------------------------------------------------------


def _properties(event: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = event.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise _Bad("malformed", "properties is not an object")
    return properties


def _track(event: Mapping[str, Any], names: frozenset[str], now_ms: int) -> Exposure:
    """A Segment or Sensors `track` event that names a configured exposure event."""
    kind = event.get("type", "track")
    if kind != "track":
        raise _Ignored()  # identify, page, profile_set...: not an exposure, and not wrong either
    name = event.get("event")
    if not isinstance(name, str) or name not in names:
        raise _Ignored()
    properties = _properties(event)
    campaign = _identifier(_first(properties, _CAMPAIGN_KEYS), "campaign_id")
    variant = _identifier(_first(properties, _VARIANT_KEYS), "variant", required=False)
    if "distinct_id" in event:  # Sensors Analytics
        owner = _identifier(event.get("distinct_id"), "owner_id")
        at = _moment_ms(event.get("time"), "time", now_ms)
        message_id = "sensors:" + _digest(owner, name, at, event.get("_track_id"), campaign)
        return Exposure(message_id, owner, campaign, variant, name, "sensors", at)
    owner = _identifier(event.get("userId"), "owner_id")
    message_id = _identifier(event.get("messageId"), "message_id")
    at = _moment_ms(_first(event, ("timestamp", "originalTimestamp")), "timestamp", now_ms)
    return Exposure(message_id, owner, campaign, variant, name, "segment", at)


def _flat(row: Mapping[str, Any], now_ms: int) -> Exposure:
    """One row of our own export format (CSV or JSON)."""
    owner = _identifier(row.get("owner_id"), "owner_id")
    campaign = _identifier(row.get("campaign_id"), "campaign_id")
    variant = _identifier(row.get("variant"), "variant", required=False)
    at = _moment_ms(row.get("exposed_at"), "exposed_at", now_ms)
    message_id = _identifier(row.get("message_id"), "message_id", required=False)
    event = _identifier(row.get("event"), "event", required=False)
    message_id = message_id or "file:" + _digest(owner, campaign, variant, at)
    return Exposure(message_id, owner, campaign, variant, event, "file", at)


def _one(item: Any, names: frozenset[str], now_ms: int) -> Exposure:
    if not isinstance(item, Mapping):
        raise _Bad("malformed", f"expected a JSON object, got {type(item).__name__}")
    if len(json.dumps(item, default=str).encode()) > MAX_EVENT_BYTES:
        raise _Bad("oversize", f"the event is larger than {MAX_EVENT_BYTES} bytes")
    if "owner_id" in item:  # our own rows: neither Segment (userId) nor Sensors (distinct_id) has the key
        return _flat(item, now_ms)
    if "event" in item or "type" in item or "distinct_id" in item:
        return _track(item, names, now_ms)
    if _FLAT_KEYS & set(item):
        return _flat(item, now_ms)
    raise _Bad("malformed", "neither a track event nor an exposure row (owner_id, campaign_id, exposed_at)")


def _collect(items: Iterable[Any], names: Iterable[str], now_ms: int) -> ParsedExposures:
    parsed, wanted = ParsedExposures(), frozenset(names)
    for index, item in enumerate(items):
        try:
            parsed.exposures.append(_one(item, wanted, now_ms))
        except _Ignored:
            parsed.ignored += 1
        except _Bad as bad:
            parsed.refused.append(Refusal(index, bad.reason, bad.detail))
    return parsed


# -- whole bodies and files ------------------------------------------------------------------------------


def _json_items(text: str) -> list[Any]:
    """A JSON object or list, or JSON lines (Sensors' import format); ValueError when it is none of them."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            return [json.loads(line) for line in lines]
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON, nor one JSON object per line (line {exc.lineno}: {exc.msg})") from exc
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in ("batch", "exposures"):
            if key in doc:
                rows = doc[key]
                if not isinstance(rows, list):
                    raise ValueError(f"{key} must be a list")
                return rows
        return [doc]
    raise ValueError("expected a JSON object, a list of them, or one object per line")


def parse_exposure_body(body: bytes, names: Iterable[str], now_ms: int) -> ParsedExposures:
    """An HTTP request's exposures (Segment, Sensors or flat rows); ValueError when the body is not JSON at all."""
    return _collect(_json_items(body.decode("utf-8")), names, now_ms)


def parse_exposure_rows(rows: Iterable[Mapping[str, Any]], names: Iterable[str], now_ms: int) -> ParsedExposures:
    return _collect(rows, names, now_ms)


def parse_exposure_file(data: bytes, names: Iterable[str], now_ms: int) -> ParsedExposures:
    """A file's exposures: JSON (any shape above) when it starts with `[` or `{`, else CSV with a header row.

    CSV: columns `owner_id,campaign_id,exposed_at[,variant][,message_id]` separated by `,` `;` or a tab,
    UTF-8 with or without a byte order mark.
    """
    text = data.decode("utf-8-sig")
    if text.lstrip()[:1] in ("[", "{"):
        return _collect(_json_items(text), names, now_ms)
    head = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=head.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    missing = {"owner_id", "campaign_id", "exposed_at"} - set(reader.fieldnames or ())
    if missing:
        columns = "owner_id,campaign_id,exposed_at"
        raise ValueError(f"the CSV header lacks {', '.join(sorted(missing))} (columns: {columns})")
    return _collect(({k: (v or "").strip() for k, v in row.items() if k} for row in reader), names, now_ms)
