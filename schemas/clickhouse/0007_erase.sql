-- Erasure that leaves no trace (vehicle_ingest.privacy.erase). Applied by `Store.migrate()`;
-- every statement is idempotent.
--
-- `erase_targets` holds the VINs and the owner id of one erasure while it runs. Each
-- `ALTER TABLE ... DELETE` reads them through a subquery (`vin IN (SELECT id FROM erase_targets
-- WHERE erase_id = ... AND kind = 'vin')`), so the mutation's text, which ClickHouse keeps in
-- `system.mutations` and in the table's `mutation_N.txt` file long after it is done, names only a
-- random erasure id, never a VIN or an owner. Memory engine: its rows never reach the disk, and
-- erase deletes them when it is done. (A TEMPORARY table does not work: a mutation runs in the
-- background, outside the session, and failed with "Default database is not selected".)

CREATE TABLE IF NOT EXISTS erase_targets
(
    erase_id  UUID,                               -- one erasure; concurrent erasures never mix
    kind      Enum8('vin' = 1, 'owner' = 2),
    id        String                              -- a VIN or an owner id
)
ENGINE = Memory;

-- A mutation (like a merge) writes new parts and leaves the replaced ones on disk, inactive and
-- still holding the deleted rows, until the table's cleanup removes them: `old_parts_lifetime`
-- after they were replaced (0 s on chDB, 480 s on a server by default), at the next cleanup round.
-- Rounds come every `cleanup_delay_period` (30 s) plus a random 0-10 s, backing off towards
-- `max_cleanup_delay_period` (300 s) while there is nothing to remove. Measured on chDB 4.4: a
-- replaced part went after 33 s, and after more than 120 s once the table had been idle; with the
-- settings below, after 1 s. Erase waits until the parts it replaced are gone, so this bounds how
-- long it takes. A round is a scan of the table's part list: cheap on one node. (The cluster
-- schema keeps the defaults: there, each round also reads and trims Keeper.)

ALTER TABLE signals MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE events MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE can_signals MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE dead_letters MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE latest_signals MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE daily_activity MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE trips MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE cockpit_usage MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE cdp_deliveries MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE cdp_quarantine MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE tag_history MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
ALTER TABLE ownership MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 1, cleanup_delay_period_random_add = 0;
