"""A generic webhook: the changes as JSON, with an Idempotency-Key for the whole request."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from vehicle_ingest.cdp._change import TagChange
from vehicle_ingest.cdp._http import HttpRequest, HttpSink, dumps

__all__ = ["WebhookSink", "idempotency_key"]


class WebhookSink(HttpSink):
    """`webhook+https://[user:password@]host/path`: POST {"changes": [TagChange.to_json(), ...]}."""

    def _requests(self, changes: Sequence[TagChange]) -> list[HttpRequest]:
        body = dumps({"changes": [c.to_json() for c in changes]})
        return [HttpRequest(body, {"Idempotency-Key": idempotency_key([c.message_id for c in changes])})]


def idempotency_key(message_ids: Sequence[str]) -> str:
    """sha256 hex of the message ids joined by newlines: the same batch re-sent has the same key."""
    return hashlib.sha256("\n".join(message_ids).encode()).hexdigest()
