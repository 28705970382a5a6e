-- CAN signals no mapping sends to the catalog, for a ClickHouse CLUSTER: the counterpart of
-- ../0004_can.sql (same columns, projection and settings). Sharded by VIN like `signals`, so a
-- CAN message's rows in both tables live on one shard and the identity lookup through the
-- Distributed tables counts them as on a single node.

CREATE TABLE IF NOT EXISTS can_signals_local ON CLUSTER '{cluster}'
(
    vin          LowCardinality(String) CODEC(ZSTD(1)),
    seq          UInt64 CODEC(Delta, ZSTD(1)),
    name         LowCardinality(String),
    ts           DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value        Float64 CODEC(Gorilla, ZSTD(1)),
    received_at  DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    PROJECTION by_message
    (
        SELECT vin, seq, count(), min(ts), max(ts)
        GROUP BY vin, seq
    )
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/can_signals_local', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (vin, name, ts)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

CREATE TABLE IF NOT EXISTS can_signals ON CLUSTER '{cluster}' AS can_signals_local
ENGINE = Distributed('{cluster}', currentDatabase(), can_signals_local, cityHash64(vin));
