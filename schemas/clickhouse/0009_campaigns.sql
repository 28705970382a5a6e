-- Campaign feedback: holdouts on the tag changes, and campaign exposures from the marketing side.
-- Applied by `Store.migrate()`; every statement is idempotent.
--
-- `tag_history.holdout`: 1 when the owner is in the tag's holdout (schemas/tags.toml, a keyed hash of
-- owner and tag: vehicle_ingest.tags.holdout). It is part of what the CDP was told with the change, so
-- the campaign measurement (vehicle_ingest.campaigns) reads the control group from here, exactly as the
-- marketing tool saw it, even after someone changes a share.
--
-- `exposures`: one row per exposure event the marketing side reported (Segment `track` "Campaign
-- Exposed" / "Experiment Viewed", Sensors Analytics events, CSV/JSON exports), keyed by the owner
-- (who was reached: the campaign measurement and erasure look owners up) and identified by the CDP's
-- message id. Exactly once: the writer skips ids already stored (one store thread writes), and the
-- replacing key collapses a copy that slipped past it; readers use FINAL.
-- It holds owner ids: vehicle_ingest.privacy erases it with the owner (ERASE_PLAN), hence the short
-- cleanup delays of 0007_erase.sql.

ALTER TABLE tag_history ADD COLUMN IF NOT EXISTS holdout UInt8 DEFAULT 0 AFTER transition;

CREATE TABLE IF NOT EXISTS exposures
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
ENGINE = ReplacingMergeTree
ORDER BY (owner_id, message_id)
SETTINGS cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
