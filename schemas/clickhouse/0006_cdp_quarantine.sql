-- CDP quarantine: tag changes a sink refused for good, held out of its delivery order.
-- Applied by `Store.migrate()`; every statement is idempotent.
--
-- When a sink refuses a batch's content (HTTP 4xx other than 401/403/404/405/407/408/429,
-- or a change that cannot be encoded for it), the deliverer splits the batch until the refused
-- change is alone, and records it here with the sink's answer: the rest of the outbox keeps
-- flowing. `Outbox.pending(sink)` skips the changes this table holds for that sink.
--
-- One live row per (sink, message_id). Releasing a change writes a row with `released = 1`
-- and a newer `updated_at`; ReplacingMergeTree(updated_at, released) keeps the newest row of
-- the key, and FINAL drops the key when that row is a release. A released change is pending
-- again; refused again, it gets a newer row with `released = 0` and is back in quarantine.
-- Readers use FINAL (and `released = 0`) for exact answers: before a merge, the older rows
-- of a key are still on disk.
--
-- `updated_at` is filled by the store (DEFAULT), so the gateway and a CLI release order their
-- rows on one clock. `answer` is truncated by the writer; it may echo the payload, so it is
-- personal data like the change itself (vehicle_ingest.privacy erases it with the owner).

CREATE TABLE IF NOT EXISTS cdp_quarantine
(
    sink        LowCardinality(String),             -- Sink.name: derived from the URL, never holds secrets
    message_id  String,                             -- the refused change (tag_history.message_id)
    status      LowCardinality(String),             -- the sink's HTTP status, or 'invalid' (cannot be encoded)
    answer      String CODEC(ZSTD(1)),              -- the sink's response body (truncated)
    updated_at  DateTime64(6, 'UTC') DEFAULT now64(6),  -- quarantined at; on a release row, released at
    released    UInt8 DEFAULT 0                     -- 1: released, pending again (FINAL hides the key)
)
ENGINE = ReplacingMergeTree(updated_at, released)
ORDER BY (sink, message_id);
