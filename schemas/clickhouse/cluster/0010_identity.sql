-- The identity lookup reads one row per message again, for a ClickHouse CLUSTER: the counterpart
-- of ../0010_identity.sql (why: see there), on the local tables that hold the rows.

ALTER TABLE signals_local ON CLUSTER '{cluster}' ADD PROJECTION IF NOT EXISTS by_message (SELECT vin, seq, count(), min(ts) GROUP BY vin, seq);
ALTER TABLE signals_local ON CLUSTER '{cluster}' MATERIALIZE PROJECTION by_message SETTINGS mutations_sync = 2;
ALTER TABLE signals_local ON CLUSTER '{cluster}' DROP PROJECTION IF EXISTS by_identity SETTINGS mutations_sync = 2;

ALTER TABLE events_local ON CLUSTER '{cluster}' ADD PROJECTION IF NOT EXISTS by_message (SELECT vin, seq, count(), min(ts) GROUP BY vin, seq);
ALTER TABLE events_local ON CLUSTER '{cluster}' MATERIALIZE PROJECTION by_message SETTINGS mutations_sync = 2;
ALTER TABLE events_local ON CLUSTER '{cluster}' DROP PROJECTION IF EXISTS by_identity SETTINGS mutations_sync = 2;

ALTER TABLE can_signals_local ON CLUSTER '{cluster}' ADD PROJECTION IF NOT EXISTS by_message (SELECT vin, seq, count(), min(ts) GROUP BY vin, seq);
ALTER TABLE can_signals_local ON CLUSTER '{cluster}' MATERIALIZE PROJECTION by_message SETTINGS mutations_sync = 2;
ALTER TABLE can_signals_local ON CLUSTER '{cluster}' DROP PROJECTION IF EXISTS by_identity SETTINGS mutations_sync = 2;
