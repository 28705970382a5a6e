"""Privacy: retention of raw location, and erasure of a person's or a vehicle's data.

Raw coordinates expire through a TTL (schemas/clickhouse/0005_privacy.sql) whose
retention the gateway sets from `location_retention_days`. `erase` removes an owner's
or a vehicle's rows from every table that holds them; `ERASE_PLAN` names each table and
how its rows are found, and a test checks that every table with a `vin`, `owner_id` or
`message_id` column in the migrations is in it, so a new table cannot be forgotten.

Erasure leaves no trace of whom it erased (docs/SECURITY.md, "Erase"): the VINs and the owner id
go into the Memory table `erase_targets` under a random erasure id, each `ALTER TABLE ... DELETE`
reads them through a subquery, so the mutation text the store keeps names only that id; then
`erase` waits until the parts the deletions replaced, which still hold the rows, are gone from
disk. Every value reaches SQL through parameter binding (server-side `{name:Type}` for erasure:
no length limit from `max_query_size`); the only formatted values are table names and conditions
from `ERASE_PLAN` and the integer retention.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.errors import ConfigError, ErasureIncompleteError, StoreError, UnknownErasureTargetError
from vehicle_ingest.storage import Store

__all__ = [
    "ERASE_DERIVED",
    "ERASE_PLAN",
    "ERASE_WAIT_S",
    "LOCATION_PATHS",
    "Erasure",
    "ErasureTarget",
    "delete_rows",
    "erase",
    "location_retention_days",
    "location_signal_ids",
    "replaced_parts_left",
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

# The targets of one erasure, read by each mutation through a subquery: the mutation's text, which the
# store keeps (system.mutations, mutation_N.txt), names the random erasure id and never a VIN or an owner.
_VINS = "(SELECT id FROM erase_targets WHERE erase_id = {erase:UUID} AND kind = 'vin')"
_OWNERS = "(SELECT id FROM erase_targets WHERE erase_id = {erase:UUID} AND kind = 'owner')"
_OWNER_CHANGES = f"(SELECT message_id FROM tag_history WHERE owner_id IN {_OWNERS})"
_BY_VIN = f"vin IN {_VINS}"
# table -> the condition selecting the target's rows. In this order: the CDP tables' rows are found
# through tag_history, deleted after them.
ERASE_PLAN: dict[str, str] = {
    "signals": _BY_VIN,
    "events": _BY_VIN,
    "can_signals": _BY_VIN,
    # A dead letter's vin comes from the payload when it parsed, else from the topic: check both.
    "dead_letters": f"vin IN {_VINS} OR splitByChar('/', topic)[3] IN {_VINS}",
    "latest_signals": _BY_VIN,
    "daily_activity": _BY_VIN,
    "trips": _BY_VIN,
    "cockpit_usage": _BY_VIN,
    "cdp_deliveries": f"message_id IN {_OWNER_CHANGES}",
    # The sink's answer may echo the refused payload: it goes with the owner's changes.
    "cdp_quarantine": f"message_id IN {_OWNER_CHANGES}",
    "tag_history": f"owner_id IN {_OWNERS}",
    # Who a campaign reached: keyed by the owner id the marketing side sent (vehicle_ingest.campaigns).
    "exposures": f"owner_id IN {_OWNERS}",
    "ownership": f"vin IN {_VINS} OR owner_id IN {_OWNERS}",
}
# Tables the tag engine derives and rebuilds each cycle (not in the migrations): until the next cycle
# they still hold the owner, so erase deletes the owner's rows there too when the table exists.
ERASE_DERIVED = {"owner_features": f"owner_id IN {_OWNERS}"}
ERASE_WAIT_S = 600.0  # a server removes replaced parts old_parts_lifetime (480 s by default) after a mutation
_POLL_S = 0.1


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
        if bool(self.owner.strip()) == bool(self.vin.strip()):
            raise ConfigError("erase", "give exactly one of an owner id or a VIN")

    @property
    def kind(self) -> str:
        return "vin" if self.vin.strip() else "owner"


@dataclass(frozen=True, slots=True)
class Erasure:
    """What `delete_rows` did: the target's rows found per table (ERASE_PLAN order), and the inactive parts
    of the erased tables on disk when the deletions ended (`table/part`): those they replaced, and older ones
    (merged away before) that may hold the same rows. Both go only when the store removes them."""

    found: dict[str, int]
    replaced_parts: frozenset[str]


def erase(
    store: Store, target: ErasureTarget, *, dry_run: bool = False, wait_s: float = ERASE_WAIT_S
) -> dict[str, int]:
    """Delete the target's rows from every table in ERASE_PLAN, then wait until no part on disk holds them.

    Returns the rows found per table (with `dry_run`, deletes nothing and returns what it would delete).
    Raises UnknownErasureTargetError when no table holds a row of the target, and ErasureIncompleteError
    when replaced parts are still on disk after `wait_s`.

    An owner's erasure removes the whole history of every vehicle registered to them,
    including periods before or after their ownership: it errs towards erasing more.
    Another owner's tags and registry rows for such a vehicle are theirs and stay.
    """
    erasure = delete_rows(store, target, dry_run=dry_run)
    deadline = time.monotonic() + wait_s
    while left := replaced_parts_left(store, erasure):
        if time.monotonic() >= deadline:
            raise ErasureIncompleteError(sorted(left), wait_s)
        time.sleep(_POLL_S)
    return erasure.found


def delete_rows(store: Store, target: ErasureTarget, *, dry_run: bool = False) -> Erasure:
    """The deleting half of `erase`: returns before the replaced parts are removed from disk.

    The gateway waits for those itself (`replaced_parts_left`) so that ingestion goes on meanwhile.
    """
    _refuse_distributed(store)
    params = {"erase": str(uuid.uuid4())}
    try:
        _put_targets(store, target, params)
        found = _count(store, ERASE_PLAN, params)
        if not any(found.values()):
            raise UnknownErasureTargetError(target.kind)
        if dry_run:
            return Erasure(found, frozenset())
        derived = _count(store, _existing(store, ERASE_DERIVED), params)
        for table, count in [*found.items(), *derived.items()]:
            if count:
                # mutations_sync: return only once the rows are gone from every active part.
                condition = ERASE_PLAN.get(table) or ERASE_DERIVED[table]
                store.command(f"ALTER TABLE {table} DELETE WHERE {condition} SETTINGS mutations_sync = 2", params)
    finally:
        # Memory table: the targets never reached the disk; now they leave memory too.
        store.command("ALTER TABLE erase_targets DELETE WHERE erase_id = {erase:UUID}", params)
    _restart_cleanup(store, [t for t, n in [*found.items(), *derived.items()] if n])
    return Erasure(found, replaced_parts_left(store, None))


def _restart_cleanup(store: Store, tables: list[str]) -> None:
    """Embedded store: the cleanup task keeps the delay it was scheduled with when the process started
    (up to ~40 s) although 0007 set it to 1 s; restarting it runs it under the new delay now."""
    if not store.embedded:
        return  # a server removes replaced parts after old_parts_lifetime whatever we do (docs/SECURITY.md)
    for table in tables:
        store.command(f"SYSTEM STOP CLEANUP {table}")
        store.command(f"SYSTEM START CLEANUP {table}")


def replaced_parts_left(store: Store, erasure: Erasure | None) -> frozenset[str]:
    """Inactive parts of the erased tables still on disk (of those `erasure` replaced; all when None).

    Mutations and merges replace parts; the replaced ones stay on disk, still holding the deleted
    rows, until the store's cleanup removes them (see schemas/clickhouse/0007_erase.sql).
    """
    rows = store.rows(
        "SELECT concat(table, '/', name) FROM system.parts"
        " WHERE database = currentDatabase() AND NOT active AND table IN {tables:Array(String)}",
        {"tables": [*ERASE_PLAN, *ERASE_DERIVED]},
    )
    left = frozenset(r[0] for r in rows)
    return left if erasure is None else left & erasure.replaced_parts


def _count(store: Store, plan: dict[str, str], params: dict[str, str]) -> dict[str, int]:
    found = {}
    for table, condition in plan.items():
        found[table] = int(store.rows(f"SELECT count() FROM {table} WHERE {condition}", params)[0][0])
    return found


def _put_targets(store: Store, target: ErasureTarget, params: dict[str, str]) -> None:
    """The VIN, or the owner and every VIN ever registered to them, into erase_targets (bound, server-side)."""
    if target.kind == "vin":
        store.command(
            "INSERT INTO erase_targets (erase_id, kind, id) SELECT {erase:UUID}, 'vin', {vin:String}",
            {**params, "vin": target.vin},
        )
        return
    owner = {**params, "owner": target.owner}
    store.command("INSERT INTO erase_targets (erase_id, kind, id) SELECT {erase:UUID}, 'owner', {owner:String}", owner)
    store.command(
        "INSERT INTO erase_targets (erase_id, kind, id)"
        " SELECT DISTINCT {erase:UUID}, 'vin', vin FROM ownership WHERE owner_id = {owner:String}",
        owner,
    )


def _existing(store: Store, plan: dict[str, str]) -> dict[str, str]:
    """The part of `plan` whose tables exist (the tag engine creates owner_features on its first run)."""
    rows = store.rows(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        {"names": list(plan)},
    )
    return {r[0]: plan[r[0]] for r in rows}


def _refuse_distributed(store: Store) -> None:
    """On the cluster schema the tables are Distributed, which take no mutations: say so before changing anything."""
    rows = store.rows(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'Distributed'"
        " AND name IN {names:Array(String)} ORDER BY name",
        {"names": list(ERASE_PLAN)},
    )
    if rows:
        raise StoreError(
            f"erase runs on one node's tables (chDB or a single server); {rows[0][0]} and {len(rows) - 1} more"
            " are Distributed tables of the cluster schema, which do not support mutations (docs/SECURITY.md)"
        )
