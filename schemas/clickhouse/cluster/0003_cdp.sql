-- CDP delivery (tag-change outbox and per-sink delivery state) for a
-- ClickHouse CLUSTER: the counterpart of ../0003_cdp.sql.
--
-- Both tables are sharded by cityHash64(message_id): a change and its delivery
-- records live on the same shard, so ReplacingMergeTree FINAL is exact per
-- message_id and the outbox's `message_id NOT IN (SELECT ... FROM
-- cdp_deliveries ...)` may run shard-local (distributed_product_mode = 'local')
-- as well as with GLOBAL IN (distributed_product_mode = 'global').

CREATE TABLE IF NOT EXISTS tag_history_local ON CLUSTER '{cluster}'
(
    message_id  String,
    owner_id    String,
    tag         LowCardinality(String),
    action      LowCardinality(String),             -- 'added' | 'removed'
    evidence    String CODEC(ZSTD(1)),              -- JSON object of scalars
    traits      String CODEC(ZSTD(1)),              -- JSON object: the owner's profile after the change
    at          DateTime64(3, 'UTC'),               -- the instant the tags were evaluated for
    transition  UInt32,                             -- changes the (owner, tag) pair had before this one
    enqueued_at DateTime64(6, 'UTC') DEFAULT now64(6),  -- delivery order: the clock of the node that ran the insert
    INDEX by_owner owner_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/tag_history_local', '{replica}')
ORDER BY message_id;

CREATE TABLE IF NOT EXISTS cdp_deliveries_local ON CLUSTER '{cluster}'
(
    sink          LowCardinality(String),           -- Sink.name: derived from the URL, never holds secrets
    message_id    String,
    delivered_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/cdp_deliveries_local', '{replica}')
ORDER BY (sink, message_id);

CREATE TABLE IF NOT EXISTS tag_history ON CLUSTER '{cluster}' AS tag_history_local
ENGINE = Distributed('{cluster}', currentDatabase(), tag_history_local, cityHash64(message_id));

CREATE TABLE IF NOT EXISTS cdp_deliveries ON CLUSTER '{cluster}' AS cdp_deliveries_local
ENGINE = Distributed('{cluster}', currentDatabase(), cdp_deliveries_local, cityHash64(message_id));
