-- Campaign feedback for a ClickHouse CLUSTER: the counterpart of ../0009_campaigns.sql.
--
-- `tag_history.holdout` is added to the local table and to its Distributed table. `exposures` is
-- sharded by cityHash64(owner_id): every copy of one (owner_id, message_id) lands on one shard, where
-- ReplacingMergeTree FINAL collapses it, and an owner's exposures sit together.

ALTER TABLE tag_history_local ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS holdout UInt8 DEFAULT 0 AFTER transition;
ALTER TABLE tag_history ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS holdout UInt8 DEFAULT 0 AFTER transition;

CREATE TABLE IF NOT EXISTS exposures_local ON CLUSTER '{cluster}'
(
    message_id   String,                            -- the sender's message id (Sensors: derived, see CDP.md)
    owner_id     String,                            -- Segment userId / Sensors distinct_id: our owner id
    campaign_id  LowCardinality(String),            -- schemas/campaigns.toml `id`
    variant      LowCardinality(String),            -- the sender's variant / variation ('' when none)
    event        LowCardinality(String),            -- the event name it came as
    source       LowCardinality(String),            -- 'segment' | 'sensors' | 'file'
    exposed_at   DateTime64(3, 'UTC'),              -- when the owner was reached (the event's timestamp)
    received_at  DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX by_message message_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/exposures_local', '{replica}')
ORDER BY (owner_id, message_id);

CREATE TABLE IF NOT EXISTS exposures ON CLUSTER '{cluster}' AS exposures_local
ENGINE = Distributed('{cluster}', currentDatabase(), exposures_local, cityHash64(owner_id));
