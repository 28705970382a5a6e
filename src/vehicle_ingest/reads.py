"""Reads on engine sessions of their own: read-only, bounded, recycled after any failure.

Why not the ingest session: settings applied with `SET` live in the session (one clickhouse-connect
client = one chDB handle = one session). clickhouse-connect applies per-call settings to a non-SELECT
statement with a `SET` it later restores; with `readonly=1` among them the restore itself is refused,
and the session stayed read-only, so every later insert failed. A read session here takes its limits
once, `readonly=1` last, and nothing else ever runs on it.

Why recycle: chDB keeps the partial output of a query stopped mid-stream (a timeout, a limit) and
returns it as the result of the next query on the same handle. A session whose query failed is
closed, and the next query opens a fresh one.

`ReadPool` holds a few sessions: a caller either gets one at once or `QueryBusyError`, never a queue.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import clickhouse_connect

from vehicle_ingest.errors import QueryBusyError, QueryFailedError, StoreError
from vehicle_ingest.query_gate import MAX_QUERY_BYTES, gate_statement

__all__ = ["QueryLimits", "QueryResult", "Queryable", "ReadPool", "ReadSession"]

T = TypeVar("T")


class Queryable(Protocol):
    """What a read needs from a store or a read session: rows of a (trusted, parameter-bound) query."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]: ...

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Bounds of one read; the gateway's `query_*` settings."""

    max_memory_bytes: int = 1 << 30
    max_execution_s: int = 30
    max_result_rows: int = 100_000
    max_result_bytes: int = 64 << 20
    max_threads: int = 1
    max_concurrent: int = 2
    max_query_bytes: int = MAX_QUERY_BYTES

    def engine_settings(self) -> dict[str, int | str]:
        """In the order they must be applied: `readonly` last, or it forbids the others."""
        return {
            "max_memory_usage": self.max_memory_bytes,
            "max_execution_time": self.max_execution_s,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_threads": self.max_threads,
            "readonly": 1,
        }


# ClickHouse error codes a read reaches by being too big, with the setting that bounds it.
_LIMIT_CODES = {
    "TIMEOUT_EXCEEDED": "ran longer than query_max_execution_s ({max_execution_s} s)",
    "MEMORY_LIMIT_EXCEEDED": "needed more memory than query_max_memory_bytes ({max_memory_bytes} bytes)",
    "TOO_MANY_ROWS_OR_BYTES": (
        "result exceeds query_max_result_rows ({max_result_rows}) or query_max_result_bytes ({max_result_bytes}):"
        " add LIMIT or aggregate"
    ),
}


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def to_json(self) -> bytes:
        """`{"columns": [...], "rows": [[...], ...]}`; values JSON cannot hold (dates, UUIDs, NaN) as text."""
        rows = [[_jsonable(v) for v in row] for row in self.rows]
        return json.dumps({"columns": self.columns, "rows": rows}, ensure_ascii=False).encode() + b"\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(
        value, dt.date | dt.time | decimal.Decimal | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address
    ):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class ReadSession:
    """One read-only engine session with the limits applied; used by one thread at a time."""

    def __init__(self, dsn: str, limits: QueryLimits) -> None:
        self.dsn = dsn
        self.limits = limits
        self._client: Any = None

    def run(self, text: str) -> QueryResult:
        """An analyst's statement: through the gate, then executed as normalised by the engine's parser."""
        statement = gate_statement(self, text, self.limits.max_query_bytes)
        columns, rows = self.query(statement)
        return QueryResult(columns, rows)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A trusted statement of ours (stats, report), bounded by the same limits."""
        result = self._guarded(lambda client: client.query(sql, parameters=parameters))
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.query(sql, parameters)[1]

    def call(self, function: str, text: str) -> Any:
        """`function(text)` with the text bound as a parameter (the query gate's parser)."""
        result = self._guarded(lambda client: client.query(f"SELECT {function}({{q:String}})", parameters={"q": text}))
        return result.result_rows[0][0]

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def _guarded(self, work: Callable[[Any], T]) -> T:
        client = self._open()
        try:
            return work(client)
        except Exception as exc:
            self.close()  # its handle may hold the failed query's leftover output
            raise QueryFailedError(self._reason(exc)) from exc

    def _open(self) -> Any:
        if self._client is not None:
            return self._client
        settings = self.limits.engine_settings()
        try:
            if self.dsn.startswith("chdb://"):
                client = clickhouse_connect.get_client(dsn=self.dsn)
                for name, value in settings.items():  # session-wide, in order: readonly last
                    client.command(f"SET {name} = {value!r}" if isinstance(value, str) else f"SET {name} = {value}")
            else:  # a server: sent with every request; a read-only user's profile may fix them too
                client = clickhouse_connect.get_client(
                    dsn=self.dsn, secure=self.dsn.startswith("https://"), settings=settings
                )
        except Exception as exc:
            raise StoreError(f"cannot open a read session on the store: {exc}") from exc
        self._client = client
        return client

    def _reason(self, exc: Exception) -> str:
        text = str(exc)
        for code, reason in _LIMIT_CODES.items():
            if code in text:
                limits = self.limits
                return "query " + reason.format(
                    max_execution_s=limits.max_execution_s,
                    max_memory_bytes=limits.max_memory_bytes,
                    max_result_rows=limits.max_result_rows,
                    max_result_bytes=limits.max_result_bytes,
                )
        start = text.find("DB::Exception: ")
        message = text[start + len("DB::Exception: ") :] if start >= 0 else text
        return " ".join(message.split())[:500]


class ReadPool:
    """`limits.max_concurrent` read sessions on one store; a caller gets one at once or `QueryBusyError`."""

    def __init__(self, dsn: str, limits: QueryLimits) -> None:
        self.limits = limits
        self._free: list[ReadSession] = [ReadSession(dsn, limits) for _ in range(limits.max_concurrent)]
        self._lock = threading.Lock()

    def acquire(self) -> ReadSession:
        with self._lock:
            if not self._free:
                busy = f"all {self.limits.max_concurrent} read slots are busy (query_max_concurrent); retry"
                raise QueryBusyError(busy)
            return self._free.pop()

    def release(self, session: ReadSession) -> None:
        with self._lock:
            self._free.append(session)

    def bind(self, work: Callable[[ReadSession], T]) -> Callable[[], T]:
        """Take a session now (or raise `QueryBusyError`); the returned call runs `work` and gives the session back.

        The release happens in whatever thread runs the call, after `work` returned: a caller that
        stops waiting cannot hand the session to someone else while it is still in use.
        """
        session = self.acquire()

        def run() -> T:
            try:
                return work(session)
            finally:
                self.release(session)

        return run

    def close(self) -> None:
        with self._lock:
            sessions: Sequence[ReadSession] = list(self._free)
        for session in sessions:
            session.close()
