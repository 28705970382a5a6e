"""The one error hierarchy of vehicle-ingest.

    VehicleIngestError
    ├── ConfigError        a setting is missing or wrong; names the key and what is wrong
    ├── CatalogError       a schema file (signal / event catalog) is inconsistent
    ├── EncodeError        the caller asked to encode something the wire format cannot carry
    ├── StoreError         the store refused or failed an operation (retryable unless stated)
    └── DeliveryError      a CDP sink did not take a batch; the outbox keeps it and the caller retries

Payload problems are not exceptions: the decoder returns a status per message,
because one bad message must never stop a batch.
"""

from __future__ import annotations

__all__ = ["CatalogError", "ConfigError", "DeliveryError", "EncodeError", "StoreError", "VehicleIngestError"]


class VehicleIngestError(Exception):
    """Base of every error raised on purpose by vehicle-ingest."""


class ConfigError(VehicleIngestError):
    """A configuration value is missing or invalid."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class CatalogError(VehicleIngestError):
    """A catalog file is malformed or contradicts the VSS tree."""


class EncodeError(VehicleIngestError):
    """Input to an encoder cannot be represented in the wire format."""


class StoreError(VehicleIngestError):
    """The store failed an operation."""


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
