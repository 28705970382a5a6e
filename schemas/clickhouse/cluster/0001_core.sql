-- Core ingestion tables for a ClickHouse CLUSTER: the counterpart of
-- ../0001_core.sql (same file name, same columns; tests/test_cluster_ddl.py
-- fails when the two drift apart). Apply before any gateway connects: see
-- README.md in this folder for the order, the macros and the user profile.
--
-- Layout: every table of the single-node schema becomes
--   <name>_local  Replicated*MergeTree on every node (the data), and
--   <name>        Distributed over <name>_local (what the gateway's SQL names),
-- so the gateway, the feature jobs and the tag engine run unchanged.
--
-- Exactly-once on a cluster: `signals` and `events` are sharded by
-- cityHash64(vin), so all rows of one message (one VIN) go to one shard. With
-- distributed_foreground_insert = 1 the Distributed table splits the gateway's
-- batch by shard and inserts each shard's rows synchronously as ONE insert
-- into <name>_local, which writes one part (one partition: the batch's
-- received_at) holding the rows and their `by_message` projection, as on a
-- single node. A batch is no longer atomic across shards, but a message still
-- is: after a partial failure the gateway retries unacked, and its identity
-- lookup (a normal SELECT through the Distributed table; each shard answers
-- from its own projection) finds the messages that did land and inserts only
-- the rest. Replica lag is the one gap, closed by the profile settings in
-- README.md (insert_quorum, load_balancing); replicated block deduplication
-- catches a retried identical batch on top of that.

CREATE TABLE IF NOT EXISTS signals_local ON CLUSTER '{cluster}'
(
    vin          LowCardinality(String) CODEC(ZSTD(1)),
    seq          UInt64 CODEC(Delta, ZSTD(1)),
    signal_id    UInt16,
    ts           DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value        Float64 CODEC(Gorilla, ZSTD(1)),
    received_at  DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    PROJECTION by_message
    (
        SELECT vin, seq, count(), min(ts), max(ts)
        GROUP BY vin, seq
    )
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/signals_local', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (vin, signal_id, ts)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;  -- acked must survive a power cut, not just kill -9

CREATE TABLE IF NOT EXISTS events_local ON CLUSTER '{cluster}'
(
    vin          LowCardinality(String) CODEC(ZSTD(1)),
    seq          UInt64 CODEC(Delta, ZSTD(1)),
    event_id     UInt16,
    ts           DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value        Int64,
    text         String CODEC(ZSTD(1)),
    received_at  DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    PROJECTION by_message
    (
        SELECT vin, seq, count(), min(ts), max(ts)
        GROUP BY vin, seq
    )
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (vin, ts, event_id)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

-- Replacing on (topic, payload_hash) as on a single node; sharded by topic so a
-- rejected message redelivered after a crash lands on the same shard and
-- collapses there (FINAL merges within a shard only).
CREATE TABLE IF NOT EXISTS dead_letters_local ON CLUSTER '{cluster}'
(
    received_at   DateTime64(3, 'UTC'),
    topic         String,
    vin           String,
    seq           UInt64,
    reason        LowCardinality(String),
    error_offset  Int32,
    payload_size  UInt32,
    payload_hash  UInt64,
    payload       String CODEC(ZSTD(3))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/dead_letters_local', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (topic, payload_hash)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

-- The names the gateway uses. Each shard's rows of one VIN stay together.
CREATE TABLE IF NOT EXISTS signals ON CLUSTER '{cluster}' AS signals_local
ENGINE = Distributed('{cluster}', currentDatabase(), signals_local, cityHash64(vin));

CREATE TABLE IF NOT EXISTS events ON CLUSTER '{cluster}' AS events_local
ENGINE = Distributed('{cluster}', currentDatabase(), events_local, cityHash64(vin));

CREATE TABLE IF NOT EXISTS dead_letters ON CLUSTER '{cluster}' AS dead_letters_local
ENGINE = Distributed('{cluster}', currentDatabase(), dead_letters_local, cityHash64(topic));
