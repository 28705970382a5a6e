"""The one storage layer: ClickHouse through clickhouse-connect.

`chdb:///path` opens the embedded engine (chDB) in this process;
`http(s)://host:port` talks to a ClickHouse server. Same SQL, same code.

Inserts are synchronous on purpose: ClickHouse 26.x enables `async_insert`
by default, which may return before data is readable. The gateway acks the
broker when an insert returns, so every insert here forces `async_insert=0`
and a single block (one part per partition), which is what makes a message's
rows appear all at once or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import numpy as np
import pyarrow as pa

from vehicle_ingest._resources import schema_path
from vehicle_ingest.errors import ConfigError, StoreError, StoreRejectedError, StoreUnavailableError

__all__ = [
    "CanSignalRows",
    "DailyRows",
    "DeadLetterRows",
    "EventRows",
    "LatestRows",
    "SignalRows",
    "Store",
    "default_migrations_dir",
    "fleet_stats",
]

_INSERT_SETTINGS = {
    "async_insert": 0,
    # One block per insert: an insert split into several parts is not atomic.
    "max_insert_block_size": 100_000_000,
    "min_insert_block_size_rows": 100_000_000,
    "min_insert_block_size_bytes": 4_000_000_000,
}
# The embedded engine shares the gateway's two cores: one thread per insert stores as fast and
# needs a third less transient memory (sorting and squashing per thread). A SETTINGS clause, not
# `command(settings=...)`: on chDB that reads system.settings, SETs and restores on every call.
_EMBEDDED_INSERT_SETTINGS = {**_INSERT_SETTINGS, "max_threads": 1}
_EMBEDDED_INSERT_CLAUSE = ", ".join(f"{k} = {v}" for k, v in _EMBEDDED_INSERT_SETTINGS.items())


# Bound identities, zipped in the engine. The cast: an array literal's element type is inferred from
# its values, and a narrow one (UInt8 for [7]) fails against wider stored seqs.
_IDENTITY_IN = "(vin, seq) IN (SELECT arrayJoin(arrayZip(%(vins)s, CAST(%(seqs)s AS Array(UInt64)))))"
# The same identities as two comma-joined strings, split in the engine: clickhouse-connect binds
# and comment-scans a list element by element in Python (8 % of the gateway's busy time at 1 M
# samples/s), one string in a single step. Only for VINs that cannot hold a comma (checked).
_IDENTITY_IN_JOINED = (
    "(vin, seq) IN (SELECT arrayJoin(arrayZip(splitByChar(',', %(vins)s),"
    " arrayMap(s -> toUInt64(s), splitByChar(',', %(seqs)s)))))"
)
_LOOKUP_CHUNK = 2000  # identities per lookup query (about 60 KB of query text)

_ERROR_CODE = re.compile(r"\bCode: (\d+)\b")
# ClickHouse error codes that mean "these rows cannot be stored": CANNOT_PARSE_TEXT, TYPE_MISMATCH,
# ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, INCORRECT_DATA, TOO_LARGE_STRING_SIZE,
# VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, DECIMAL_OVERFLOW, VIOLATED_CONSTRAINT.
_REFUSED_ROWS = frozenset({6, 53, 69, 70, 117, 131, 321, 407, 469})


def default_migrations_dir() -> Path:
    return schema_path("clickhouse")


@dataclass(frozen=True, slots=True)
class SignalRows:
    """Rows for `signals`; `vin_index` points into `vins` (one str per distinct VIN)."""

    vins: Sequence[str]
    vin_index: np.ndarray  # int32
    seq: np.ndarray  # uint64
    signal_id: np.ndarray  # uint16
    ts: np.ndarray  # int64 ms
    value: np.ndarray  # float64
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class EventRows:
    vins: Sequence[str]
    vin_index: np.ndarray
    seq: np.ndarray
    event_id: np.ndarray
    ts: np.ndarray
    value: np.ndarray  # int64
    text: np.ndarray  # object array of str
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class CanSignalRows:
    """Rows for `can_signals`: decoded CAN values no mapping sends to the catalog."""

    vins: Sequence[str]
    vin_index: np.ndarray  # int32
    seq: np.ndarray  # uint64
    names: Sequence[str]  # DBC `Message.Signal` names
    name_index: np.ndarray  # int32 into names
    ts: np.ndarray  # int64 ms
    value: np.ndarray  # float64
    received_at_ms: int
    integer: np.ndarray | None = None  # int64: exact values of integer DBC signals (stored where is_integer)
    is_integer: np.ndarray | None = None  # bool


@dataclass(frozen=True, slots=True)
class DeadLetterRows:
    topic: list[str]
    vin: list[str]
    seq: np.ndarray  # uint64
    reason: list[str]
    error_offset: np.ndarray  # int32
    payload_size: np.ndarray  # uint32
    payload_hash: np.ndarray  # uint64
    payload: list[bytes]
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class LatestRows:
    """A batch's last value per (vehicle, signal): rows of `latest_signals_batch`."""

    vins: Sequence[str]
    vin_index: np.ndarray  # int32
    signal_id: np.ndarray  # uint16
    value: np.ndarray  # float64
    ts: np.ndarray  # int64 ms


@dataclass(frozen=True, slots=True)
class DailyRows:
    """One row per (message, UTC day) with samples: rows of `daily_activity_batch`."""

    vins: Sequence[str]
    vin_index: np.ndarray  # int32
    day: np.ndarray  # int64 days since 1970-01-01
    seq: np.ndarray  # uint64
    odo_min: np.ndarray  # float64, meaningful where has_odo
    odo_max: np.ndarray
    has_odo: np.ndarray  # bool
    speed_max: np.ndarray  # meaningful where has_speed
    has_speed: np.ndarray  # bool


def _ts_array(ms: np.ndarray) -> pa.Array:
    return pa.array(np.ascontiguousarray(ms, dtype=np.int64)).cast(pa.timestamp("ms", tz="UTC"))


def _received_column(ms: int, n: int) -> pa.Array:
    return _ts_array(np.full(n, ms, dtype=np.int64))


def _exact_integers(integer: np.ndarray | None, is_integer: np.ndarray | None, n: int) -> pa.Array:
    """Nullable Int64: the exact value where the signal is an integer one, NULL elsewhere."""
    if integer is None or is_integer is None:
        return pa.nulls(n, pa.int64())
    return pa.array(integer.astype(np.int64), mask=~is_integer.astype(bool))


def _vin_column(vins: Sequence[str], index: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(list(vins), pa.string()))


def _connect(dsn: str) -> Any:
    try:
        # clickhouse-connect does not infer TLS from an https:// DSN: say it.
        return clickhouse_connect.get_client(dsn=dsn, secure=dsn.startswith("https://"), settings={"async_insert": 0})
    except Exception as exc:
        raise StoreError(f"cannot open store {dsn}: {exc}") from exc


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements; `--` comments are dropped."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


class Store:
    """A ClickHouse database holding signals, events and dead letters."""

    def __init__(self, client: Any, dsn: str) -> None:
        self._client = client
        self.dsn = dsn
        self.embedded = dsn.startswith("chdb://")  # the engine runs in this process (chDB)
        self._holding: set[str] = set()

    @classmethod
    def open(cls, dsn: str) -> Store:
        if not dsn.startswith(("chdb://", "http://", "https://")):
            raise ConfigError("store", f"unsupported DSN {dsn!r}: use chdb:///path or http(s)://host:port")
        if dsn.startswith("chdb://"):
            path = Path(dsn.removeprefix("chdb://")).expanduser().resolve()
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store folder {path}: {exc.strerror or exc}") from exc
            dsn = f"chdb://{path}"
        return cls(_connect(dsn), dsn)

    def _recycle(self) -> None:
        """After a failed query: chDB hands a failed query's leftover output to the next query on the handle."""
        if not self.embedded:
            return
        self._client.close()
        self._client = _connect(self.dsn)

    def release_memory(self) -> None:
        """Embedded engine: return freed allocator pages to the OS (its jemalloc keeps them otherwise)."""
        if self.embedded:
            self.command("SYSTEM JEMALLOC PURGE")

    def close(self) -> None:
        self._client.close()

    # -- schema -----------------------------------------------------------

    def migrate(self, migrations_dir: Path | None = None) -> list[str]:
        """Apply migration files not yet recorded; returns the names applied."""
        folder = migrations_dir or default_migrations_dir()
        self.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime64(3, 'UTC')"
            " DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY name"
        )
        done = {row[0] for row in self.rows("SELECT name FROM schema_migrations FINAL")}
        applied = []
        for path in sorted(folder.glob("*.sql")):
            if path.name in done:
                continue
            for statement in split_statements(path.read_text()):
                self.command(statement)
            self.command("INSERT INTO schema_migrations (name) VALUES (%(n)s)", {"n": path.name})
            applied.append(path.name)
        return applied

    # -- generic ----------------------------------------------------------

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        try:
            return self._client.command(sql, parameters=parameters, settings={"async_insert": 0})
        except Exception as exc:
            raise StoreError(f"{_first_line(sql)}: {exc}") from exc

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.query(sql, parameters)[1]

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A statement of ours on the ingest session; analysts' queries go through `vehicle_ingest.reads`."""
        try:
            result = self._client.query(sql, parameters=parameters)
        except Exception as exc:
            self._recycle()
            raise StoreError(f"{_first_line(sql)}: {exc}") from exc
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    # -- ingestion --------------------------------------------------------

    def stored_identities(
        self, table: str, vins: Sequence[str], vin_index: np.ndarray, seq: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows `table` holds per (vin, seq) identity and their earliest ts in ms; (0, 0) where none.

        Answered by the `by_message` projection (one row per identity and part) inside each part.
        """
        n = len(seq)
        count, ts_min = np.zeros(n, np.int64), np.zeros(n, np.int64)
        vin_of = [vins[i] for i in vin_index.tolist()]
        seqs = seq.tolist()
        position = {ident: i for i, ident in enumerate(zip(vin_of, seqs, strict=True))}
        # Two bound arrays zipped in the engine: ClickHouse parses them about 3x faster than a
        # literal list of tuples. Chunked: they travel in the query text, which max_query_size caps.
        joined = all(v.isalnum() for v in vins)  # what validation lets through: 17 of the VIN alphabet
        sql = (
            f"SELECT vin, seq, count(), toInt64(toUnixTimestamp64Milli(min(ts))) FROM {table}"
            f" WHERE {_IDENTITY_IN_JOINED if joined else _IDENTITY_IN} GROUP BY vin, seq"
        )
        for lo in range(0, n, _LOOKUP_CHUNK):
            part_vins, part_seqs = vin_of[lo : lo + _LOOKUP_CHUNK], seqs[lo : lo + _LOOKUP_CHUNK]
            chunk: dict[str, Any] = {"vins": part_vins, "seqs": part_seqs}
            if joined:
                chunk = {"vins": ",".join(part_vins), "seqs": ",".join(map(str, part_seqs))}
            for vin, s, rows, earliest in self._lookup(sql, chunk):
                i = position[(vin, int(s))]
                count[i], ts_min[i] = rows, earliest
        return count, ts_min

    def holds_rows(self, table: str) -> bool:
        """Whether `table` has ever held a row since this handle saw it do so (a fleet without raw CAN
        never pays for looking identities up in can_signals). Once true, stays true: the answer only
        decides whether to look, and looking in a table that was emptied finds nothing."""
        if table not in self._holding:
            if not self._lookup(f"SELECT 1 FROM {table} LIMIT 1"):
                return False
            self._holding.add(table)
        return True

    def _lookup(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """A read of the ingest path: whatever stops it is the store's problem, never the batch's."""
        try:
            return self.rows(sql, parameters)
        except StoreError as exc:
            raise StoreUnavailableError(str(exc)) from exc

    def insert_can_signals(self, rows: CanSignalRows) -> None:
        n = len(rows.seq)
        if n == 0:
            return
        names = pa.DictionaryArray.from_arrays(pa.array(rows.name_index.astype(np.int32)), pa.array(list(rows.names)))
        table = pa.table(
            {
                "vin": _vin_column(rows.vins, rows.vin_index),
                "seq": pa.array(rows.seq.astype(np.uint64)),
                "name": names,
                "ts": _ts_array(rows.ts),
                "value": pa.array(rows.value.astype(np.float64)),
                "received_at": _received_column(rows.received_at_ms, n),
                "value_int": _exact_integers(rows.integer, rows.is_integer, n),
            }
        )
        self._insert_arrow("can_signals", table)

    def insert_signals(self, rows: SignalRows) -> None:
        n = len(rows.seq)
        if n == 0:
            return
        table = pa.table(
            {
                "vin": _vin_column(rows.vins, rows.vin_index),
                "seq": pa.array(rows.seq.astype(np.uint64)),
                "signal_id": pa.array(rows.signal_id.astype(np.uint16)),
                "ts": _ts_array(rows.ts),
                "value": pa.array(rows.value.astype(np.float64)),
                "received_at": _received_column(rows.received_at_ms, n),
            }
        )
        self._insert_arrow("signals", table)

    def insert_events(self, rows: EventRows) -> None:
        n = len(rows.seq)
        if n == 0:
            return
        table = pa.table(
            {
                "vin": _vin_column(rows.vins, rows.vin_index),
                "seq": pa.array(rows.seq.astype(np.uint64)),
                "event_id": pa.array(rows.event_id.astype(np.uint16)),
                "ts": _ts_array(rows.ts),
                "value": pa.array(rows.value.astype(np.int64)),
                "text": pa.array(list(rows.text), pa.string()),
                "received_at": _received_column(rows.received_at_ms, n),
            }
        )
        self._insert_arrow("events", table)

    def insert_dead_letters(self, rows: DeadLetterRows) -> None:
        n = len(rows.topic)
        if n == 0:
            return
        table = pa.table(
            {
                "received_at": _received_column(rows.received_at_ms, n),
                "topic": pa.array(rows.topic, pa.string()),
                "vin": pa.array(rows.vin, pa.string()),
                "seq": pa.array(rows.seq.astype(np.uint64)),
                "reason": pa.array(rows.reason, pa.string()),
                "error_offset": pa.array(rows.error_offset.astype(np.int32)),
                "payload_size": pa.array(rows.payload_size.astype(np.uint32)),
                "payload_hash": pa.array(rows.payload_hash.astype(np.uint64)),
                "payload": pa.array(rows.payload, pa.binary()),
            }
        )
        self._insert_arrow("dead_letters", table)

    def insert_aggregates(self, latest: LatestRows, daily: DailyRows) -> None:
        """A batch's aggregates, through the Null tables whose views fold them into `latest_signals`
        and `daily_activity` (migration 0008)."""
        if len(latest.ts):
            self._insert_arrow(
                "latest_signals_batch",
                pa.table(
                    {
                        "vin": _vin_column(latest.vins, latest.vin_index),
                        "signal_id": pa.array(latest.signal_id.astype(np.uint16)),
                        "value": pa.array(latest.value.astype(np.float64)),
                        "ts": _ts_array(latest.ts),
                    }
                ),
            )
        if len(daily.seq):
            self._insert_arrow(
                "daily_activity_batch",
                pa.table(
                    {
                        "vin": _vin_column(daily.vins, daily.vin_index),
                        "day": pa.array(daily.day.astype(np.int32)).cast(pa.date32()),
                        "seq": pa.array(daily.seq.astype(np.uint64)),
                        "odo_min": pa.array(np.where(daily.has_odo, daily.odo_min, 0.0)),
                        "odo_max": pa.array(np.where(daily.has_odo, daily.odo_max, 0.0)),
                        "has_odo": pa.array(daily.has_odo.astype(bool)),
                        "speed_max": pa.array(np.where(daily.has_speed, daily.speed_max, 0.0)),
                        "has_speed": pa.array(daily.has_speed.astype(bool)),
                    }
                ),
            )

    def insert_rows(self, table: str, column_names: list[str], rows: Sequence[Sequence[Any]]) -> None:
        """Row-wise insert for small derived tables (features, state); never for samples."""
        if not rows:
            return
        try:
            self._client.insert(table, [list(r) for r in rows], column_names=column_names, settings=_INSERT_SETTINGS)
        except Exception as exc:
            raise StoreError(f"insert into {table} failed: {exc}") from exc

    def _insert_arrow(self, name: str, table: pa.Table) -> None:
        table = table.combine_chunks()
        try:
            if self.embedded:
                self._insert_in_place(name, table)
            else:
                self._client.insert_arrow(name, table, settings=_INSERT_SETTINGS)
        except Exception as exc:
            self._recycle()
            raise insert_error(name, exc) from exc

    def _insert_in_place(self, target: str, table: pa.Table) -> None:
        """The embedded engine reads the Arrow columns where they are, through chDB's `Python()`.

        clickhouse-connect's `insert_arrow` on chDB writes the table as an Arrow file, copies it to
        bytes, writes those to a temporary file and has the engine parse it back: three copies of
        every batch and a file on disk. `Python(name)` resolves `name` among the calling thread's
        frames, so the table is this frame's local; table and column names are ours, never input.
        """
        _vi_arrow_block = table
        column_list = ", ".join(f"`{c}`" for c in table.schema.names)
        self._client.command(
            f"INSERT INTO {target} ({column_list}) SELECT {column_list} FROM Python(_vi_arrow_block)"
            f" SETTINGS {_EMBEDDED_INSERT_CLAUSE}"
        )

    # -- reporting --------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return fleet_stats(self)


def fleet_stats(reader: Any) -> dict[str, Any]:
    """What the store holds, deduplicated: the figures tests compare with the simulator's truth.

    `reader` is a Store or a read session (`vehicle_ingest.reads`): anything with `query` and `rows`.
    """
    sql = """
        SELECT
          (SELECT count() FROM (SELECT vin, seq FROM signals GROUP BY vin, seq))
        + (SELECT count() FROM (SELECT vin, seq FROM events GROUP BY vin, seq)) AS messages,
          (SELECT count() FROM signals) AS samples,
          (SELECT count() FROM events) AS events,
          (SELECT count() FROM dead_letters FINAL) AS rejected,
          (SELECT sum(value) FROM signals) AS value_sum,
          (SELECT count(DISTINCT vin) FROM signals) AS vehicles
    """
    names, rows = reader.query(sql)
    stats = dict(zip(names, rows[0], strict=True))
    stats["value_sum"] = float(stats["value_sum"] or 0.0)
    stats["rejected_by_reason"] = dict(
        reader.rows("SELECT reason, count() FROM dead_letters FINAL GROUP BY reason ORDER BY reason")
    )
    return {k: (int(v) if isinstance(v, int) else v) for k, v in stats.items()}


def insert_error(table: str, exc: Exception) -> StoreError:
    """StoreRejectedError when ClickHouse refused the rows themselves, else StoreUnavailableError.

    Only codes that name the data are refusals; everything else (connection, timeout, memory, too
    many parts, readonly, a missing table or column) may pass later, and a retry is right even when
    it loops: classifying a store outage as a refusal would dead-letter valid messages.
    """
    found = _ERROR_CODE.search(str(exc))
    code = int(found[1]) if found else 0
    message = f"insert into {table} failed: {exc}"
    if code in _REFUSED_ROWS:
        return StoreRejectedError(message, code)
    return StoreUnavailableError(message)


def _first_line(sql: str) -> str:
    return " ".join(sql.split())[:120]
