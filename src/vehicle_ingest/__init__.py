"""vehicle-ingest: connected-car signals and cockpit events, decoded in batches and stored exactly once."""

__version__ = "0.1.0"
