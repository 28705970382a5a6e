-- The identity lookup reads one row per message again. Applied by `Store.migrate()`; every
-- statement is idempotent.
--
-- 0008 replaced the per-message aggregate projection with `by_identity`, a copy of every row's
-- (vin, seq, ts) sorted by (vin, seq), measured on a small store. At 1 M samples/s the lookup
-- then read one 8,192-row granule per identity, so its cost grew with the store: 0.19 s per
-- batch in the first seconds, 1.2-3.1 s once the store held ~30 M rows (benchmarks/README.md).
-- `by_message` holds one pre-aggregated row per (vin, seq) and part: at 30 M rows the same
-- 2,000-identity lookup takes 0.04-0.08 s instead of 0.23-0.48 s, and a 1 M-row insert costs
-- about the same (0.17-0.27 s against 0.17-0.21 s). It still lives inside the part the insert
-- writes, so the lookup answers from the same atomic write that stored the rows. ClickHouse
-- picks it for `Store.stored_identities`' query (count() and min(ts) grouped by vin, seq).
ALTER TABLE signals ADD PROJECTION IF NOT EXISTS by_message (SELECT vin, seq, count(), min(ts) GROUP BY vin, seq);
ALTER TABLE signals MATERIALIZE PROJECTION by_message SETTINGS mutations_sync = 2;
ALTER TABLE signals DROP PROJECTION IF EXISTS by_identity SETTINGS mutations_sync = 2;

ALTER TABLE events ADD PROJECTION IF NOT EXISTS by_message (SELECT vin, seq, count(), min(ts) GROUP BY vin, seq);
ALTER TABLE events MATERIALIZE PROJECTION by_message SETTINGS mutations_sync = 2;
ALTER TABLE events DROP PROJECTION IF EXISTS by_identity SETTINGS mutations_sync = 2;

ALTER TABLE can_signals ADD PROJECTION IF NOT EXISTS by_message (SELECT vin, seq, count(), min(ts) GROUP BY vin, seq);
ALTER TABLE can_signals MATERIALIZE PROJECTION by_message SETTINGS mutations_sync = 2;
ALTER TABLE can_signals DROP PROJECTION IF EXISTS by_identity SETTINGS mutations_sync = 2;
