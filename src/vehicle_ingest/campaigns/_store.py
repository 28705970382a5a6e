"""Exposures into the store exactly once: ids already stored are skipped, the first copy of an id wins.

Synchronous on purpose, like the CDP outbox: it runs on the caller's store thread (the gateway has one
writer thread for the embedded store, so a lookup and its insert are never interleaved with another's).
Values travel as bound parameters only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from vehicle_ingest.campaigns.exposures import Exposure
from vehicle_ingest.storage import Store

__all__ = ["SavedExposures", "save_exposures"]

_CHUNK = 5000  # ids per lookup and rows per insert
_COLUMNS = ["message_id", "owner_id", "campaign_id", "variant", "event", "source", "exposed_at"]


@dataclass(frozen=True, slots=True)
class SavedExposures:
    stored: int  # new rows
    duplicates: int  # ids already stored, or repeated within the request (a CDP's retry, a file loaded twice)


def save_exposures(store: Store, exposures: Sequence[Exposure]) -> SavedExposures:
    unique: dict[str, Exposure] = {}
    for exposure in exposures:
        unique.setdefault(exposure.message_id, exposure)
    items = list(unique.values())
    stored = 0
    for lo in range(0, len(items), _CHUNK):
        chunk = items[lo : lo + _CHUNK]
        known = {
            r[0]
            for r in store.rows(
                "SELECT message_id FROM exposures WHERE message_id IN {ids:Array(String)}",
                {"ids": [e.message_id for e in chunk]},
            )
        }
        fresh = [_row(e) for e in chunk if e.message_id not in known]
        store.insert_rows("exposures", _COLUMNS, fresh)
        stored += len(fresh)
    return SavedExposures(stored, len(exposures) - stored)


def _row(e: Exposure) -> tuple[str, str, str, str, str, str, datetime]:
    at = datetime.fromtimestamp(e.exposed_at_ms / 1000, tz=UTC)
    return (e.message_id, e.owner_id, e.campaign_id, e.variant, e.event, e.source, at)
