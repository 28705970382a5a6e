-- CAN signals that no mapping sends to the catalog, under their DBC name `Message.Signal`
-- (mapped ones land in `signals` as catalog signals).
--
-- Exactly-once when one CAN message writes two tables: each table gets the message's rows in
-- ONE insert (one part), and the identity lookup counts a message's rows in BOTH tables. A retry
-- inserts only into the table(s) where the message has no rows yet, so an insert into
-- can_signals that succeeded before the insert into signals failed is neither repeated nor lost.
-- The `by_message` projection answers that lookup, as in 0001_core.sql.

CREATE TABLE IF NOT EXISTS can_signals
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (vin, name, ts)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1;
