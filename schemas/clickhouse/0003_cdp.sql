-- CDP delivery: the tag-change outbox and per-sink delivery state.
-- Applied by `Store.migrate()`; every statement is idempotent.
--
-- A tag change is written to `tag_history` once (keyed by its deterministic
-- message_id) and then delivered to each configured sink at least once. A
-- delivery is recorded in `cdp_deliveries` only after the sink accepted it,
-- so a crash between "sent" and "recorded" re-sends the same message_id, which
-- the CDP deduplicates. Both tables replace on their key: a retried insert
-- collapses, and readers use FINAL or set semantics (NOT IN) for exact counts.
--
-- tag_history is also the tag engine's memory: an owner's delivered tags are
-- the latest change per (owner, tag). One write per change means a crash can
-- never leave the outbox and the engine's state disagreeing.

CREATE TABLE IF NOT EXISTS tag_history
(
    message_id  String,
    owner_id    String,
    tag         LowCardinality(String),
    action      LowCardinality(String),             -- 'added' | 'removed'
    evidence    String CODEC(ZSTD(1)),              -- JSON object of scalars
    traits      String CODEC(ZSTD(1)),              -- JSON object: the owner's profile after the change
    at          DateTime64(3, 'UTC'),               -- the instant the tags were evaluated for
    transition  UInt32,                             -- changes the (owner, tag) pair had before this one
    enqueued_at DateTime64(6, 'UTC') DEFAULT now64(6),  -- delivery order: the store's clock, not the caller's
    -- history(owner_id) must not scan the whole table: the key is message_id.
    INDEX by_owner owner_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
ORDER BY message_id;

CREATE TABLE IF NOT EXISTS cdp_deliveries
(
    sink          LowCardinality(String),           -- Sink.name: derived from the URL, never holds secrets
    message_id    String,
    delivered_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (sink, message_id);
