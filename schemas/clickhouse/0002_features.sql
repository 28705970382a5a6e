-- Owners, trips, cockpit usage and tag state.
--
-- Trips and cockpit usage are recomputed by periodic jobs (`vehicle_ingest.features`)
-- for the vehicles and days that received data, so late and out-of-order
-- messages are folded in and a re-run writes the same rows: the tables are
-- ReplacingMergeTree keyed by the feature's identity, with `is_deleted`
-- tombstones for rows a recomputation no longer produces. Read them with FINAL.

CREATE TABLE IF NOT EXISTS ownership
(
    vin         LowCardinality(String),
    owner_id    String,
    valid_from  DateTime64(3, 'UTC'),   -- usage from this instant on belongs to owner_id
    drivers     Array(String),
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (vin, valid_from);

CREATE TABLE IF NOT EXISTS trips
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
    tz_offset_min     Int32,       -- local solar time offset (4 min per degree of longitude), for night and commute
    segmented_by      LowCardinality(String),   -- ignition | gap
    computed_at       DateTime64(3, 'UTC'),
    is_deleted        UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(computed_at, is_deleted)
ORDER BY (vin, trip_start);

CREATE TABLE IF NOT EXISTS cockpit_usage
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
ENGINE = ReplacingMergeTree(computed_at, is_deleted)
ORDER BY (vin, day, feature, detail);

-- Latest value of every signal per vehicle: argMax merges, so a materialized
-- view keeps it current at insert time. A redelivered block cannot change an
-- argMax, so a crash between the source insert and the view cannot skew it.
CREATE TABLE IF NOT EXISTS latest_signals
(
    vin        LowCardinality(String),
    signal_id  UInt16,
    last_value AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')),
    last_ts    AggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (vin, signal_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS latest_signals_mv TO latest_signals AS
SELECT vin, signal_id, argMaxState(value, ts) AS last_value, maxState(ts) AS last_ts
FROM signals
GROUP BY vin, signal_id;

-- Daily activity per vehicle: min/max/uniq states merge and are idempotent.
CREATE TABLE IF NOT EXISTS daily_activity
(
    vin        LowCardinality(String),
    day        Date,
    odo_min    AggregateFunction(min, Float64),
    odo_max    AggregateFunction(max, Float64),
    speed_max  AggregateFunction(max, Float64),
    messages   AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (vin, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_activity_mv TO daily_activity AS
SELECT vin, toDate(ts) AS day,
       minStateIf(value, signal_id = 2) AS odo_min,
       maxStateIf(value, signal_id = 2) AS odo_max,
       maxStateIf(value, signal_id = 1) AS speed_max,
       uniqExactState(seq) AS messages
FROM signals
GROUP BY vin, day;

-- Watermarks of the periodic jobs.
CREATE TABLE IF NOT EXISTS job_state
(
    job         LowCardinality(String),
    watermark   DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY job;
