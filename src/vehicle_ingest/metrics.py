"""Prometheus metrics of the ingestion path, registered on a registry the caller owns."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector

__all__ = ["PREFIX", "Metrics", "register_process_metrics"]

PREFIX = "vehicle_ingest"

_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000, 250_000)
_FAST_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Fine below 2 s: the p99 ≤ 1.5 s goal is read off these buckets.
_LAG_SECONDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 5, 10, 30, 60, 300, 3600, 86_400)


@dataclass(frozen=True)
class Metrics:
    received: Counter
    stored: Counter
    duplicates: Counter
    rejected: Counter
    samples_stored: Counter
    events_stored: Counter
    identity_violations: Counter
    store_errors: Counter
    reconnects: Counter
    connect_failures: Counter
    session_takeovers: Counter
    sessions_lost: Counter
    window_overruns: Counter
    tag_changes: Counter
    moments_fired: Counter
    moments_suppressed: Counter
    can_frames: Counter
    can_frames_unknown: Counter
    can_values_unmapped: Counter
    http_evictions: Counter
    receipts: Counter
    receipt_bytes: Counter
    receipts_dropped: Counter
    unacked: Gauge
    receive_max: Gauge
    connected: Gauge
    batch_messages: Histogram
    batch_samples: Histogram
    decode_seconds: Histogram
    lookup_seconds: Histogram
    insert_seconds: Histogram
    lag_seconds: Histogram
    moment_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, buckets=buckets, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, registry=registry)

        return cls(
            received=counter("messages_received", "MQTT messages received."),
            stored=counter("messages_stored", "Messages stored (new identities)."),
            duplicates=counter("messages_duplicate", "Redelivered messages already stored, acked and skipped."),
            rejected=counter("messages_rejected", "Messages rejected to the dead-letter table.", ("reason",)),
            samples_stored=counter("samples_stored", "Signal samples stored."),
            events_stored=counter("events_stored", "Cockpit events stored."),
            identity_violations=counter(
                "identity_violations", "Messages whose VIN is invalid or differs from the topic.", ("kind",)
            ),
            store_errors=counter("store_errors", "Failed store operations (the batch is retried, not acked)."),
            reconnects=counter("mqtt_reconnects", "MQTT connections established after the first."),
            connect_failures=counter(
                "mqtt_connect_failures", "Connection attempts to the broker that failed (TCP, TLS or CONNACK refused)."
            ),
            session_takeovers=counter(
                "mqtt_session_takeovers", "Times another client connected with our client id and took our session."
            ),
            sessions_lost=counter(
                "mqtt_sessions_lost",
                "Reconnects the broker answered without our session: what it had queued for us is gone.",
            ),
            window_overruns=counter(
                "mqtt_window_overruns", "Deliveries beyond Receive Maximum: the broker ignored the window; we waited."
            ),
            tag_changes=counter("tag_changes", "Tag changes emitted to the CDP outbox.", ("action",)),
            moments_fired=counter("moments_fired", "Real-time moments written to the CDP outbox.", ("moment",)),
            moments_suppressed=counter(
                "moments_suppressed", "Moment crossings not sent: within the owner's cool-down, or no owner then."
            ),
            can_frames=counter("can_frames_decoded", "CAN frames decoded against a vehicle model's DBC set."),
            can_frames_unknown=counter(
                "can_frames_unknown_id", "Decoded CAN frames whose arbitration id no DBC of the model defines."
            ),
            can_values_unmapped=counter(
                "can_values_unmapped", "CAN signal values stored under their DBC name (no catalog mapping)."
            ),
            http_evictions=counter(
                "http_connections_evicted",
                "Idle HTTP connections closed because a new one arrived at http_max_connections.",
            ),
            receipts=counter("receipts_published", "Receipts published to head units (one per VIN and interval)."),
            receipt_bytes=counter("receipt_bytes", "Payload bytes of the receipts published."),
            receipts_dropped=counter(
                "receipts_dropped", "Receipts not published: the MQTT client's queue was full (head units resend)."
            ),
            unacked=gauge("unacked_messages", "Messages received and not yet acked to the broker."),
            receive_max=gauge("receive_max", "Configured MQTT 5 Receive Maximum: the limit of unacked_messages."),
            connected=gauge("mqtt_connected", "1 while connected to the broker."),
            batch_messages=histogram("batch_messages", "Messages per ingested batch.", _SIZE_BUCKETS),
            batch_samples=histogram("batch_samples", "Samples per ingested batch.", _SIZE_BUCKETS),
            decode_seconds=histogram("decode_seconds", "Batch decode and validation time.", _FAST_SECONDS),
            lookup_seconds=histogram(
                "lookup_seconds", "Batch identity lookup time (runs while the previous batch inserts).", _FAST_SECONDS
            ),
            insert_seconds=histogram(
                "insert_seconds", "Batch insert time: rows, dead letters and aggregates.", _FAST_SECONDS
            ),
            lag_seconds=histogram(
                "end_to_end_lag_seconds", "Newest sample timestamp to stored, per message.", _LAG_SECONDS
            ),
            moment_seconds=histogram(
                "moment_evaluation_seconds", "Moment evaluation per batch (state rebuilds included).", _FAST_SECONDS
            ),
        )


def register_process_metrics(registry: CollectorRegistry) -> None:
    """process_* (CPU, memory, open files), python_info and vehicle_ingest_build_info on the gateway's registry."""
    from importlib.metadata import PackageNotFoundError, version

    from vehicle_ingest import __version__

    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    try:
        chdb = version("chdb")
    except PackageNotFoundError:
        chdb = "absent"
    build = Info(f"{PREFIX}_build", "The running gateway's version and its engine's.", registry=registry)
    build.info({"version": __version__, "python": platform.python_version(), "chdb": chdb})
