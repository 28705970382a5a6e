"""The one error hierarchy of vehicle-ingest.

    VehicleIngestError
    ├── ConfigError        a setting is missing or wrong; names the key and what is wrong
    │   └── ConfigErrors   every problem found in one configuration, reported at once
    ├── CatalogError       a schema file (signal / event catalog) is inconsistent
    ├── EncodeError        the caller asked to encode something the wire format cannot carry
    ├── StoreError         the store refused or failed an operation (retryable unless stated)
    │   ├── StoreUnavailableError  an insert did not happen for a reason of the store's (down, busy, out of
    │   │                          memory, schema missing): the same insert may succeed later, retry it
    │   ├── StoreRejectedError     the store refused an insert for what it carries (a constraint, a value out
    │   │                          of a type's range): it will never succeed, retrying would loop forever
    │   └── ErasureIncompleteError  rows erased, but replaced parts still held them on disk when erase gave up
    ├── UnknownErasureTargetError  erase found no row of that owner or VIN anywhere: nothing was deleted
    ├── QueryError         an analyst query was not answered; the reason is the user's to read
    │   ├── QueryRefusedError  the query gate refused it (not one read statement, OUTFILE, SETTINGS, ...)
    │   ├── QueryFailedError   the engine ran it and stopped it: a limit, a syntax or type error
    │   └── QueryBusyError     every read slot is taken: try again shortly
    └── DeliveryError      a CDP sink did not take a batch; the outbox keeps it and the caller retries
                           (or, when the sink refuses one change's content, quarantines that change)

Payload problems are not exceptions: the decoder returns a status per message,
because one bad message must never stop a batch.
"""

from __future__ import annotations

# Answers that refuse the request whatever it carries (credentials, URL, method, proxy): the sink's
# configuration is wrong, not one change. 408/429 are not refusals at all (retry later).
_REFUSES_REQUEST = frozenset({"401", "403", "404", "405", "407"})

__all__ = [
    "CatalogError",
    "ConfigError",
    "ConfigErrors",
    "DeliveryError",
    "EncodeError",
    "ErasureIncompleteError",
    "QueryBusyError",
    "QueryError",
    "QueryFailedError",
    "QueryRefusedError",
    "StoreError",
    "StoreRejectedError",
    "StoreUnavailableError",
    "UnknownErasureTargetError",
    "VehicleIngestError",
]


class VehicleIngestError(Exception):
    """Base of every error raised on purpose by vehicle-ingest."""


class ConfigError(VehicleIngestError):
    """A configuration value is missing or invalid.

    `source` says where the value came from (a file path, `env VI_NAME`, `--flag`) when known;
    `key` may be empty for a problem with a whole file (unreadable, not TOML).
    """

    def __init__(self, key: str, problem: str, source: str = "") -> None:
        super().__init__(": ".join(part for part in (source, key, problem) if part))
        self.key = key
        self.problem = problem
        self.source = source


class ConfigErrors(ConfigError):  # noqa: N818 (the plural of ConfigError, and one itself)
    """Several configuration problems, found together; `key` and `problem` are the first one's."""

    def __init__(self, errors: list[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = errors[0]
        super().__init__(first.key, first.problem, first.source)
        self.errors = list(errors)
        self.args = ("\n".join(str(e) for e in self.errors),)


class CatalogError(VehicleIngestError):
    """A catalog file is malformed or contradicts the VSS tree."""


class EncodeError(VehicleIngestError):
    """Input to an encoder cannot be represented in the wire format."""


class StoreError(VehicleIngestError):
    """The store failed an operation."""


class StoreUnavailableError(StoreError):
    """An insert failed for a reason of the store's: the same insert may succeed later (retry it)."""


class StoreRejectedError(StoreError):
    """The store refused an insert for the rows it carries (`code` is ClickHouse's error code)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ErasureIncompleteError(StoreError):
    """The rows are deleted, but parts they were replaced from were still on disk when erase stopped waiting.

    The engine removes such parts `old_parts_lifetime` after they were replaced; `parts` names them
    (`table/part`). Erasing the same target again finds nothing (`UnknownErasureTargetError`).
    """

    def __init__(self, parts: list[str], waited_s: float) -> None:
        shown = ", ".join(parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "")
        super().__init__(
            f"rows erased, but {len(parts)} replaced parts still hold them on disk after {waited_s:.0f} s ({shown});"
            " the store removes them old_parts_lifetime after the erase"
        )
        self.parts = parts


class UnknownErasureTargetError(VehicleIngestError):
    """No table holds a row of the owner or vehicle to erase; nothing was deleted.

    The message does not repeat the identifier: it ends up in logs, which erasure must not feed.
    """

    def __init__(self, kind: str) -> None:
        what = "owner (no ownership row, no tag history)" if kind == "owner" else "VIN"
        super().__init__(f"nothing to erase: the store holds no row of this {what}")
        self.kind = kind


class QueryError(VehicleIngestError):
    """An analyst query was not answered; the message is meant for the person who wrote it."""


class QueryRefusedError(QueryError):
    """The query gate refused the statement before the engine ran anything."""


class QueryFailedError(QueryError):
    """The engine ran the statement and stopped it: a limit was reached, or the SQL is wrong."""


class QueryBusyError(QueryError):
    """Every read slot is busy: the caller should retry later (HTTP 503)."""


class DeliveryError(VehicleIngestError):
    """A CDP sink failed to deliver a batch of tag changes; nothing was marked delivered.

    `status` is the HTTP status code as a string, or "timeout" / "error" (no
    answer) / "invalid" (the batch cannot be encoded for this sink).
    """

    def __init__(self, sink: str, status: str, detail: str) -> None:
        super().__init__(f"{sink}: {status}: {detail}")
        self.sink = sink
        self.status = status
        self.detail = detail

    @property
    def rejected(self) -> bool:
        """The CDP refused the content (4xx other than 408/429): retrying alone will not make it pass."""
        if self.status == "invalid":
            return True
        return self.status.isdigit() and 400 <= int(self.status) < 500 and self.status not in ("408", "429")

    @property
    def refuses_content(self) -> bool:
        """Rejected for what the batch carries (400, 413, 422, ..., "invalid"): some change in it is poison.

        401/403/404/405/407 are rejections too, but of every request to this sink: narrowing the batch
        down would quarantine every change, so they stay retried (at the maximum backoff) until fixed.
        """
        return self.rejected and self.status not in _REFUSES_REQUEST
