-- Core ingestion tables. Applied once, in file order, by `Store.migrate()`;
-- every statement is idempotent so a half-applied migration can be re-run.
--
-- Exactly-once: a message's rows go to exactly one table (signals or events)
-- in ONE insert, which ClickHouse writes as one part (one partition: the
-- partition key is the batch's received_at). The `by_message` aggregate
-- projection lives inside that part, so "is (vin, seq) stored?" is answered
-- from the same atomic write that stored the data: no separate commit marker
-- that a crash could separate from the rows it describes.

CREATE TABLE IF NOT EXISTS signals
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (vin, signal_id, ts)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;  -- acked must survive a power cut, not just kill -9

CREATE TABLE IF NOT EXISTS events
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (vin, ts, event_id)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;

-- Rejected messages, with the reason and the first bytes of the payload.
-- Replacing on (topic, payload_hash): a rejected message redelivered after a
-- crash collapses into one row; `FINAL` or uniqExact gives the exact count.
CREATE TABLE IF NOT EXISTS dead_letters
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (topic, payload_hash)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;
