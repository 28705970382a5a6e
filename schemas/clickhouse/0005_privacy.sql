-- Privacy: raw location expires. Applied by `Store.migrate()`; idempotent.
--
-- Raw coordinates (signals 10, 11: Vehicle.CurrentLocation.Latitude/Longitude, and
-- 340, 341: the navigation destination) are deleted 120 days after they were measured.
-- Trips keep only 5-character geohashes (about 5 km), which do not expire with this TTL.
-- The retention is the gateway setting `location_retention_days`: at start the gateway
-- re-issues these statements with its value when it differs (vehicle_ingest.privacy).
-- TTL applies when parts are written and merged: rows older than the retention never
-- land, and MODIFY TTL also rewrites the parts that already hold expired rows.

ALTER TABLE signals
    MODIFY TTL toDateTime(ts) + INTERVAL 120 DAY DELETE WHERE signal_id IN (10, 11, 340, 341);

-- The last known position per vehicle would otherwise outlive the raw rows.
ALTER TABLE latest_signals
    MODIFY TTL toDateTime(finalizeAggregation(last_ts)) + INTERVAL 120 DAY DELETE WHERE signal_id IN (10, 11, 340, 341);
