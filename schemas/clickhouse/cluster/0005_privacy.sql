-- Raw location expires, for a ClickHouse CLUSTER: the counterpart of ../0005_privacy.sql. TTL is a
-- property of the tables holding the data, so it is set on the local tables (a Distributed table
-- has none). Recorded in schema_migrations like every cluster file, so a gateway's single-node
-- migration of the same name is skipped. `location_retention_days` other than 120: re-issue these
-- two statements with the new value (the gateway re-issues the single-node ones only).

ALTER TABLE signals_local ON CLUSTER '{cluster}'
    MODIFY TTL toDateTime(ts) + INTERVAL 120 DAY DELETE WHERE signal_id IN (10, 11, 340, 341);

ALTER TABLE latest_signals_local ON CLUSTER '{cluster}'
    MODIFY TTL toDateTime(finalizeAggregation(last_ts)) + INTERVAL 120 DAY DELETE WHERE signal_id IN (10, 11, 340, 341);
