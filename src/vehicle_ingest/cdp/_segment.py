"""Segment HTTP tracking API (`/v1/batch`): one identify + one track per tag change, one track per moment.

The same wire format is accepted by RudderStack, Customer.io and other
Segment-compatible CDPs. Limits from the Segment spec, counted on the compact
UTF-8 JSON we send, in decimal kilobytes (a little below the binary figures):
32 KB per message, 500 KB per batch request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from vehicle_ingest import __version__
from vehicle_ingest.cdp._change import TagChange
from vehicle_ingest.cdp._http import HttpRequest, HttpSink, dumps
from vehicle_ingest.errors import DeliveryError

__all__ = ["MAX_BATCH_BYTES", "MAX_MESSAGE_BYTES", "SegmentSink", "segment_messages"]

MAX_MESSAGE_BYTES = 32_000
MAX_BATCH_BYTES = 500_000
_EVENTS = {"added": "Tag Added", "removed": "Tag Removed"}
_MOMENT_EVENT = "Moment Fired"
_CONTEXT = {"library": {"name": "vehicle-ingest", "version": __version__}}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SegmentSink(HttpSink):
    """`segment+https://WRITEKEY@host[:port][/path]`: the write key is the Basic-auth username."""

    _path_suffix = "/v1/batch"

    def _requests(self, changes: Sequence[TagChange]) -> list[HttpRequest]:
        messages = [m for change in changes for m in segment_messages(change, self.name)]
        sent_at = _iso(_now_ms()).encode()
        return [HttpRequest(_batch_body(group, sent_at), {}) for group in _pack(messages)]


def segment_messages(change: TagChange, sink: str = "segment") -> list[bytes]:
    """The encoded identify and track messages of one change, each within MAX_MESSAGE_BYTES."""
    common = {"userId": change.owner_id, "timestamp": _iso(change.at_ms), "context": _CONTEXT}
    if change.action == "fired":  # a moment: an event, not a profile change, so no identify
        track = {"type": "track", "messageId": change.message_id, "event": _MOMENT_EVENT, **common}
        track["properties"] = {**change.evidence, "moment": change.tag}
        return [_fit(track, "properties", "evidence_truncated", {"moment"}, sink)]
    identify = {"type": "identify", "messageId": f"{change.message_id}-identify", **common, "traits": change.traits}
    properties = {**change.evidence, "tag": change.tag}
    if change.holdout:  # absent means "not held out": the payloads of tags without a holdout stay as they were
        properties["holdout"] = True
    track = {"type": "track", "messageId": change.message_id, "event": _EVENTS[change.action], **common}
    track["properties"] = properties
    return [
        _fit(identify, "traits", "traits_truncated", set(), sink),
        _fit(track, "properties", "evidence_truncated", {"tag", "holdout"}, sink),
    ]


def _fit(message: dict[str, Any], key: str, flag: str, keep: set[str], sink: str) -> bytes:
    """Encode `message`; if too big, drop fields of message[key] largest-first and set `flag`."""
    body = dumps(message)
    if len(body) <= MAX_MESSAGE_BYTES:
        return body
    fields = dict(message[key])
    # Exact size of each `"key":value,` entry; ties broken by key so that
    # every retry drops the same fields and sends byte-identical content.
    sizes = sorted(
        ((len(dumps(k)) + len(dumps(v)) + 2, k) for k, v in fields.items() if k not in keep),
        key=lambda item: (-item[0], item[1]),
    )
    size = len(body) + len(dumps({flag: True}))
    for entry_size, k in sizes:
        del fields[k]
        size -= entry_size
        if size <= MAX_MESSAGE_BYTES:
            body = dumps({**message, key: {**fields, flag: True}})
            if len(body) <= MAX_MESSAGE_BYTES:
                return body
    raise DeliveryError(sink, "invalid", f"message {message['messageId']} exceeds {MAX_MESSAGE_BYTES} bytes")


def _pack(messages: list[bytes]) -> list[list[bytes]]:
    """Group messages, in order, into batches whose body stays within MAX_BATCH_BYTES."""
    overhead = len(_batch_body([], _iso(0).encode()))
    groups: list[list[bytes]] = []
    current: list[bytes] = []
    size = overhead
    for message in messages:
        extra = len(message) + (1 if current else 0)  # the comma
        if current and size + extra > MAX_BATCH_BYTES:
            groups.append(current)
            current, size, extra = [], overhead, len(message)
        current.append(message)
        size += extra
    if current:
        groups.append(current)
    return groups


def _batch_body(messages: list[bytes], sent_at: bytes) -> bytes:
    return b'{"batch":[' + b",".join(messages) + b'],"sentAt":"' + sent_at + b'"}'


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
