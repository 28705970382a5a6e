"""The data files the package ships: the repository's schemas/, installed inside the package.

Found with importlib.resources, so they are where the package is, installed or checked out
(src/vehicle_ingest/schemas links to the repository's schemas/, the one source).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from vehicle_ingest.errors import CatalogError

__all__ = ["schema_path"]


def schema_path(*parts: str) -> Path:
    """A file or folder of the bundled schemas, e.g. `schema_path("clickhouse")`.

    A real path: DBC files are read by cantools from a path, and wheels install unzipped.
    """
    resource = files("vehicle_ingest").joinpath("schemas", *parts)
    if not isinstance(resource, Path):
        raise CatalogError(f"vehicle-ingest's data files are not on disk ({resource}): install it unzipped")
    return resource
