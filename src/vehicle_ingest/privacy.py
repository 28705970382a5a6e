"""Privacy: retention of raw location, and erasure of a person's or a vehicle's data.

Raw coordinates expire through a TTL (schemas/clickhouse/0005_privacy.sql) whose
retention the gateway sets from `location_retention_days`. `erase` removes an owner's
or a vehicle's rows from every table that holds them; `ERASE_PLAN` names each table and
how its rows are found, and a test checks that every table with a `vin`, `owner_id` or
`message_id` column in the migrations is in it, so a new table cannot be forgotten.

Every value reaches SQL through parameter binding; the only formatted values are table
names from `ERASE_PLAN` and the integer retention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.errors import ConfigError
from vehicle_ingest.storage import Store

__all__ = [
    "ERASE_PLAN",
    "LOCATION_PATHS",
    "ErasureTarget",
    "erase",
    "location_retention_days",
    "location_signal_ids",
    "set_location_retention",
]

LOCATION_PATHS = (
    "Vehicle.CurrentLocation.Latitude",
    "Vehicle.CurrentLocation.Longitude",
    "Vehicle.Cabin.Infotainment.Navigation.DestinationSet.Latitude",
    "Vehicle.Cabin.Infotainment.Navigation.DestinationSet.Longitude",
)
_TTL_TABLES = {
    "signals": "toDateTime(ts)",
    "latest_signals": "toDateTime(finalizeAggregation(last_ts))",
}
_RETENTION = re.compile(r"toIntervalDay\((\d+)\)")

# table -> the condition selecting the rows of the vehicles %(vins)s or the owner %(owner)s.
_BY_VIN = "vin IN %(vins)s"
ERASE_PLAN: dict[str, str] = {
    "signals": _BY_VIN,
    "events": _BY_VIN,
    "can_signals": _BY_VIN,
    # A dead letter's vin comes from the payload when it parsed, else from the topic: check both.
    "dead_letters": "vin IN %(vins)s OR splitByChar('/', topic)[3] IN %(vins)s",
    "latest_signals": _BY_VIN,
    "daily_activity": _BY_VIN,
    "trips": _BY_VIN,
    "cockpit_usage": _BY_VIN,
    "cdp_deliveries": "message_id IN (SELECT message_id FROM tag_history WHERE owner_id = %(owner)s)",
    # The sink's answer may echo the refused payload: it goes with the owner's changes.
    "cdp_quarantine": "message_id IN (SELECT message_id FROM tag_history WHERE owner_id = %(owner)s)",
    "tag_history": "owner_id = %(owner)s",
    "ownership": "vin IN %(vins)s OR owner_id = %(owner)s",
}


def location_signal_ids(signals: SignalCatalog) -> tuple[int, ...]:
    return tuple(sorted(signals.by_path(p).id for p in LOCATION_PATHS))


def location_retention_days(store: Store) -> int | None:
    """The retention of the raw-location TTL on `signals`, or None when there is no TTL."""
    rows = store.rows(
        "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'signals'"
    )
    match = _RETENTION.search(rows[0][0]) if rows else None
    return int(match.group(1)) if match else None


def set_location_retention(store: Store, days: int, signals: SignalCatalog) -> bool:
    """Make raw location expire `days` after measurement; False when it already does."""
    if not isinstance(days, int) or days <= 0:
        raise ConfigError("location_retention_days", f"must be a whole number of days > 0, got {days!r}")
    if location_retention_days(store) == days:
        return False
    ids = ", ".join(str(i) for i in location_signal_ids(signals))
    for table, moment in _TTL_TABLES.items():
        ttl = f"{moment} + INTERVAL {days} DAY DELETE WHERE signal_id IN ({ids})"
        store.command(f"ALTER TABLE {table} MODIFY TTL {ttl}")
    return True


@dataclass(frozen=True, slots=True)
class ErasureTarget:
    """Whose data: an owner (their vehicles' data and their tags) or one vehicle."""

    owner: str = ""
    vin: str = ""

    def __post_init__(self) -> None:
        if bool(self.owner) == bool(self.vin):
            raise ConfigError("erase", "give exactly one of an owner id or a VIN")


def _vins_of(store: Store, target: ErasureTarget) -> list[str]:
    if target.vin:
        return [target.vin]
    rows = store.rows("SELECT DISTINCT vin FROM ownership WHERE owner_id = %(o)s ORDER BY vin", {"o": target.owner})
    return [r[0] for r in rows]


def erase(store: Store, target: ErasureTarget) -> dict[str, int]:
    """Delete the target's rows from every table in ERASE_PLAN; returns the rows found per table.

    An owner's erasure removes the whole history of every vehicle registered to them,
    including periods before or after their ownership: it errs towards erasing more.
    Another owner's tags and registry rows for such a vehicle are theirs and stay.
    """
    params = {"vins": _vins_of(store, target) or [""], "owner": target.owner}
    found = {}
    # cdp_deliveries and cdp_quarantine first: their rows are found through tag_history, deleted after it.
    for table, condition in ERASE_PLAN.items():
        if not target.owner and "%(vins)s" not in condition:
            found[table] = 0  # an owner's own rows (tags): not a vehicle's
            continue
        found[table] = int(store.rows(f"SELECT count() FROM {table} WHERE {condition}", params)[0][0])
        if found[table]:
            # mutations_sync: return only once the rows are gone.
            store.command(f"ALTER TABLE {table} DELETE WHERE {condition} SETTINGS mutations_sync = 2", params)
    return found
