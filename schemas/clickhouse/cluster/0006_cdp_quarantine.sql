-- CDP quarantine for a ClickHouse CLUSTER: the counterpart of ../0006_cdp_quarantine.sql.
--
-- Sharded by cityHash64(message_id) like tag_history and cdp_deliveries: a change, its
-- deliveries and its quarantine rows live on one shard, so FINAL (which merges within a shard)
-- is exact per (sink, message_id), and the outbox's `message_id NOT IN (SELECT message_id FROM
-- cdp_quarantine FINAL ...)` is correct shard-locally as well as with GLOBAL IN.

CREATE TABLE IF NOT EXISTS cdp_quarantine_local ON CLUSTER '{cluster}'
(
    sink        LowCardinality(String),             -- Sink.name: derived from the URL, never holds secrets
    message_id  String,                             -- the refused change (tag_history.message_id)
    status      LowCardinality(String),             -- the sink's HTTP status, or 'invalid' (cannot be encoded)
    answer      String CODEC(ZSTD(1)),              -- the sink's response body (truncated)
    updated_at  DateTime64(6, 'UTC') DEFAULT now64(6),  -- quarantined at; on a release row, released at
    released    UInt8 DEFAULT 0                     -- 1: released, pending again (FINAL hides the key)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/cdp_quarantine_local', '{replica}', updated_at, released)
ORDER BY (sink, message_id);

CREATE TABLE IF NOT EXISTS cdp_quarantine ON CLUSTER '{cluster}' AS cdp_quarantine_local
ENGINE = Distributed('{cluster}', currentDatabase(), cdp_quarantine_local, cityHash64(message_id));
