"""Tag engine: current tags per owner, diffed against what was delivered, emitted as changes once.

One run: rebuild `owner_features` (one row per current owner), evaluate every
tag rule in ClickHouse, diff against the outbox (`tag_history`: the latest
change per owner and tag is what the CDP was told), and write each change
with a deterministic messageId to the outbox. The outbox is the engine's only
state, so there is no second write a crash could separate from the first: a
run that died half-way is simply planned again, and a second run with
unchanged data finds no change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.cdp import Outbox, TagChange, change_message_id
from vehicle_ingest.owners import OWNER_ID_MAX_LENGTH
from vehicle_ingest.storage import Store
from vehicle_ingest.tags.definitions import TagDefinition
from vehicle_ingest.tags.owner_features import owner_feature_parameters, owner_features_sql

__all__ = ["EMIT_CHUNK", "Diff", "TagEngine", "TagRunReport"]

# Owner ids per features lookup: bound server-side, so no id is parsed as query text (a 300,000-character
# id stopped every cycle with "Max query size exceeded" when they were formatted in); still chunked,
# because on a server large parameters travel in a form field, which http_max_field_value_size caps (128 KiB).
_OWNER_CHUNK_CHARS = 64 * 1024
_BY_ID = "WHERE owner_id IN {owners:Array(String)}"
_BY_DIGEST = "WHERE length(owner_id) > {n:UInt32} AND hex(MD5(owner_id)) IN {digests:Array(String)}"
EMIT_CHUNK = 20_000  # changes per outbox write
Diff = tuple[str, str, str, int]


@dataclass(frozen=True, slots=True)
class TagRunReport:
    owners: int
    changes: int
    added: int
    removed: int


def _tags_array_sql(definitions: Sequence[TagDefinition]) -> str:
    terms = ", ".join(f"if({d.rule.to_sql()}, '{d.id}', '')" for d in definitions)
    return f"arrayFilter(x -> x != '', [{terms}])"


def _owner_chunks(owners: list[str]) -> list[list[str]]:
    """Consecutive slices of at most _OWNER_CHUNK_CHARS characters of ids (an id longer than that alone)."""
    chunks: list[list[str]] = [[]]
    size = 0
    for owner in owners:
        if chunks[-1] and size + len(owner) > _OWNER_CHUNK_CHARS:
            chunks.append([])
            size = 0
        chunks[-1].append(owner)
        size += len(owner)
    return [c for c in chunks if c]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    return value


class TagEngine:
    def __init__(
        self, store: Store, signals: SignalCatalog, definitions: Sequence[TagDefinition], outbox: Outbox
    ) -> None:
        self._store = store
        self._signals = signals
        self._definitions = tuple(definitions)
        self._by_id = {d.id: d for d in definitions}
        self._outbox = outbox
        # With no holdout anywhere, the profile stays as it always was; with one, every change carries the list
        # (an empty one too: Segment merges traits, so a trait left out would keep its old value).
        self._holdouts = any(d.holdout > 0 for d in self._definitions)

    @property
    def definitions(self) -> tuple[TagDefinition, ...]:
        return self._definitions

    # -- compute -------------------------------------------------------------

    def refresh_features(self, as_of_ms: int) -> int:
        """Rebuild `owner_features`; returns the number of current owners."""
        # SYNC: a plain DROP leaves the old table's files on disk for database_atomic_delay_before_drop_table_sec
        # (480 s), every owner id with them, where an erasure could not reach them.
        self._store.command("DROP TABLE IF EXISTS owner_features_next SYNC")
        self._store.command(
            "CREATE TABLE owner_features_next ENGINE = MergeTree ORDER BY owner_id"
            # Replaced parts go a second after an erasure's mutation, not 30-300 s (schemas/clickhouse/0007_erase.sql).
            " SETTINGS cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0"
            " AS " + owner_features_sql(),
            owner_feature_parameters(self._signals, as_of_ms),
        )
        # A derived table, rebuilt whole each run: a crash here only means the next run rebuilds it.
        self._store.command("DROP TABLE IF EXISTS owner_features SYNC")
        self._store.command("RENAME TABLE owner_features_next TO owner_features")
        return int(self._store.rows("SELECT count() FROM owner_features")[0][0])

    def current_tags(self, as_of_ms: int | None = None) -> dict[str, list[str]]:
        """{owner_id: [tag, ...]} for every current owner (after `refresh_features`, or as of `as_of_ms`)."""
        if as_of_ms is not None:
            self.refresh_features(as_of_ms)
        rows = self._store.rows(
            f"SELECT owner_id, arraySort({_tags_array_sql(self._definitions)}) FROM owner_features ORDER BY owner_id"
        )
        return {str(owner): list(tags) for owner, tags in rows}

    # -- deliver -------------------------------------------------------------

    def run(self, as_of_ms: int) -> TagRunReport:
        owners, diff = self.plan(as_of_ms)
        added = sum(self.emit(diff[lo : lo + EMIT_CHUNK], as_of_ms) for lo in range(0, len(diff), EMIT_CHUNK))
        return TagRunReport(owners, len(diff), added, len(diff) - added)

    def plan(self, as_of_ms: int) -> tuple[int, list[Diff]]:
        """Rebuild owner features and list the changes to emit: (owners, [(owner, tag, action, transitions)])."""
        owners = self.refresh_features(as_of_ms)
        return owners, self._diff()

    def emit(self, diff: Sequence[Diff], at_ms: int) -> int:
        """Write one slice of changes to the outbox; returns how many were added.

        Slices let a caller (the gateway) interleave other store work with a
        large first run; a slice that was never written is planned again.
        """
        changes = self._changes(list(diff), at_ms)
        self._outbox.enqueue(changes)
        return sum(1 for c in changes if c.action == "added")

    def _diff(self) -> list[tuple[str, str, str, int]]:
        """(owner_id, tag, action, transitions before) for every tag that appeared or disappeared."""
        return [
            (str(o), str(t), str(a), int(n))
            for o, t, a, n in self._store.rows(
                f"""
                WITH cur AS (SELECT owner_id, arrayJoin({_tags_array_sql(self._definitions)}) AS tag
                             FROM owner_features),
                     st AS (SELECT owner_id, tag, argMax(action, transition) = 'added' AS present,
                                   max(transition) + 1 AS transitions
                            FROM tag_history FINAL GROUP BY owner_id, tag)
                SELECT if(c.owner_id != '', c.owner_id, s.owner_id) AS owner_id,
                       if(c.tag != '', c.tag, s.tag) AS tag,
                       if(c.tag != '', 'added', 'removed') AS action,
                       s.transitions AS transitions
                FROM cur AS c FULL OUTER JOIN st AS s ON c.owner_id = s.owner_id AND c.tag = s.tag
                WHERE (c.tag != '' AND s.present != 1) OR (c.tag = '' AND s.present = 1)
                ORDER BY owner_id, tag
                """
            )
        ]

    def _owner_rows(self, owners: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in _owner_chunks([o for o in owners if len(o) <= OWNER_ID_MAX_LENGTH]):
            out.update(self._features(_BY_ID, {"owners": chunk}))
        if overlong := [o for o in owners if len(o) > OWNER_ID_MAX_LENGTH]:
            # Ids the import refuses now but an older registry stored: found by digest, so that no parameter
            # is ever larger than a server accepts, however long the id.
            digests = [hashlib.md5(o.encode()).hexdigest().upper() for o in overlong]
            out.update(self._features(_BY_DIGEST, {"n": OWNER_ID_MAX_LENGTH, "digests": digests}))
        return out

    def _features(self, where: str, parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
        sql = f"SELECT *, arraySort({_tags_array_sql(self._definitions)}) AS _tags FROM owner_features {where}"
        names, rows = self._store.query(sql, parameters)
        return {str(r[0]): dict(zip(names, r, strict=True)) for r in rows}

    def _changes(self, diff: list[tuple[str, str, str, int]], at_ms: int) -> list[TagChange]:
        features = self._owner_rows(sorted({o for o, _, _, _ in diff}))
        changes = []
        for owner, tag, action, transitions in diff:
            row = features.get(owner, {})
            definition = self._by_id.get(tag)
            evidence = {k: _jsonable(row.get(k)) for k in (definition.evidence if definition else ())}
            changes.append(
                TagChange(
                    message_id=change_message_id(owner, tag, action, transitions),
                    owner_id=owner,
                    tag=tag,
                    action=action,
                    evidence=evidence,
                    traits=self._traits(owner, list(row.get("_tags", []))),
                    at_ms=at_ms,
                    transition=transitions,
                    holdout=bool(definition and definition.held_out(owner)),
                )
            )
        return changes

    def _traits(self, owner: str, current: list[str]) -> dict[str, Any]:
        """The owner's profile after the change: their tags and, where tags have holdouts, the ones held out of."""
        traits: dict[str, Any] = {"tags": current, "tag_count": len(current)}
        if self._holdouts:
            traits["holdouts"] = [t for t in current if (d := self._by_id.get(t)) is not None and d.held_out(owner)]
        return traits
