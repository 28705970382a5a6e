-- Owners, trips, cockpit usage and tag state for a ClickHouse CLUSTER: the
-- counterpart of ../0002_features.sql (same columns, engines made Replicated).
--
-- Everything keyed by vehicle is sharded by cityHash64(vin), the same key as
-- `signals`, so a vehicle's samples, trips, usage, owner rows and aggregates
-- live on one shard: ReplacingMergeTree FINAL (which only merges within a
-- shard) stays exact, and joins on vin are shard-local.
--
-- The materialized views read the LOCAL `signals_local` and write the LOCAL
-- aggregate tables: each shard aggregates its own rows at insert time, on the
-- replica that received the insert (replicas then fetch the aggregate parts).
-- They keep the single-node view names, so the single-node migration's
-- `CREATE MATERIALIZED VIEW IF NOT EXISTS` is a no-op here.

CREATE TABLE IF NOT EXISTS ownership_local ON CLUSTER '{cluster}'
(
    vin         LowCardinality(String),
    owner_id    String,
    valid_from  DateTime64(3, 'UTC'),   -- usage from this instant on belongs to owner_id
    drivers     Array(String),
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/ownership_local', '{replica}', updated_at)
ORDER BY (vin, valid_from);

CREATE TABLE IF NOT EXISTS trips_local ON CLUSTER '{cluster}'
(
    vin               LowCardinality(String),
    trip_start        DateTime64(3, 'UTC'),
    trip_end          DateTime64(3, 'UTC'),
    duration_s        Float64,
    distance_km       Float64,     -- odometer delta
    distance_speed_km Float64,     -- integrated speed, the cross-check
    avg_speed_kmh     Float64,     -- distance / duration
    max_speed_kmh     Float64,
    harsh_accel       UInt32,
    harsh_brake       UInt32,
    energy_used_pct   Float64,     -- fuel level or traction battery SOC drop
    energy_kind       LowCardinality(String),
    night_share       Float64,     -- share of distance driven 22:00-05:00 local (solar) time
    start_geohash     String,      -- 5 characters (about 5 km): no raw coordinates leave this table
    end_geohash       String,
    tz_offset_min     Int32,       -- local solar time offset (4 min per degree of longitude)
    segmented_by      LowCardinality(String),   -- ignition | gap
    computed_at       DateTime64(3, 'UTC'),
    is_deleted        UInt8 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/trips_local', '{replica}', computed_at, is_deleted)
ORDER BY (vin, trip_start);

CREATE TABLE IF NOT EXISTS cockpit_usage_local ON CLUSTER '{cluster}'
(
    vin          LowCardinality(String),
    day          Date,
    feature      LowCardinality(String),
    detail       String,       -- app id, media source, projection type; '' when not applicable
    sessions     UInt32,
    duration_s   Float64,
    computed_at  DateTime64(3, 'UTC'),
    is_deleted   UInt8 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/cockpit_usage_local', '{replica}', computed_at, is_deleted)
ORDER BY (vin, day, feature, detail);

CREATE TABLE IF NOT EXISTS latest_signals_local ON CLUSTER '{cluster}'
(
    vin        LowCardinality(String),
    signal_id  UInt16,
    last_value AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')),
    last_ts    AggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/latest_signals_local', '{replica}')
ORDER BY (vin, signal_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS latest_signals_mv ON CLUSTER '{cluster}' TO latest_signals_local AS
SELECT vin, signal_id, argMaxState(value, ts) AS last_value, maxState(ts) AS last_ts
FROM signals_local
GROUP BY vin, signal_id;

CREATE TABLE IF NOT EXISTS daily_activity_local ON CLUSTER '{cluster}'
(
    vin        LowCardinality(String),
    day        Date,
    odo_min    AggregateFunction(min, Float64),
    odo_max    AggregateFunction(max, Float64),
    speed_max  AggregateFunction(max, Float64),
    messages   AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/daily_activity_local', '{replica}')
ORDER BY (vin, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_activity_mv ON CLUSTER '{cluster}' TO daily_activity_local AS
SELECT vin, toDate(ts) AS day,
       minStateIf(value, signal_id = 2) AS odo_min,
       maxStateIf(value, signal_id = 2) AS odo_max,
       maxStateIf(value, signal_id = 1) AS speed_max,
       uniqExactState(seq) AS messages
FROM signals_local
GROUP BY vin, day;

-- A handful of rows; sharded like everything else so FINAL stays exact.
CREATE TABLE IF NOT EXISTS job_state_local ON CLUSTER '{cluster}'
(
    job         LowCardinality(String),
    watermark   DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/job_state_local', '{replica}', updated_at)
ORDER BY job;

CREATE TABLE IF NOT EXISTS ownership ON CLUSTER '{cluster}' AS ownership_local
ENGINE = Distributed('{cluster}', currentDatabase(), ownership_local, cityHash64(vin));

CREATE TABLE IF NOT EXISTS trips ON CLUSTER '{cluster}' AS trips_local
ENGINE = Distributed('{cluster}', currentDatabase(), trips_local, cityHash64(vin));

CREATE TABLE IF NOT EXISTS cockpit_usage ON CLUSTER '{cluster}' AS cockpit_usage_local
ENGINE = Distributed('{cluster}', currentDatabase(), cockpit_usage_local, cityHash64(vin));

-- Read-only for the gateway (only the views write the local tables); read
-- them with the *Merge combinators and GROUP BY, which merge across shards.
CREATE TABLE IF NOT EXISTS latest_signals ON CLUSTER '{cluster}' AS latest_signals_local
ENGINE = Distributed('{cluster}', currentDatabase(), latest_signals_local, cityHash64(vin));

CREATE TABLE IF NOT EXISTS daily_activity ON CLUSTER '{cluster}' AS daily_activity_local
ENGINE = Distributed('{cluster}', currentDatabase(), daily_activity_local, cityHash64(vin));

CREATE TABLE IF NOT EXISTS job_state ON CLUSTER '{cluster}' AS job_state_local
ENGINE = Distributed('{cluster}', currentDatabase(), job_state_local, cityHash64(job));
