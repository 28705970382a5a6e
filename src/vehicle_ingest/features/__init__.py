"""Features computed in ClickHouse: trips and cockpit usage (periodic jobs), latest signals and daily activity
(materialized views)."""

from vehicle_ingest.features.jobs import (
    COCKPIT_EVENT_FEATURES,
    COCKPIT_STATE_FEATURES,
    FeatureJobs,
    FeatureReport,
    TripRules,
)

__all__ = ["COCKPIT_EVENT_FEATURES", "COCKPIT_STATE_FEATURES", "FeatureJobs", "FeatureReport", "TripRules"]
