-- Least-privilege ClickHouse access for vehicle-ingest on a server (not applied by
-- `Store.migrate()`: an administrator runs this once, e.g.
--   clickhouse-client --multiquery < schemas/clickhouse/security/gateway_role.sql
-- after replacing the two passwords). The database is `vehicle_ingest` (the compose DSN's).
--
-- Two identities:
--   vehicle_ingest_migrator  applies schemas/clickhouse/*.sql (CREATE / ALTER); used by
--                            deployments, never by the long-running gateway.
--   vehicle_ingest_gateway   the running gateway: INSERT where it writes, SELECT where it
--                            reads, ALTER DELETE only for `erase` (every table in
--                            vehicle_ingest.privacy.ERASE_PLAN, and erase_targets), ALTER TTL only on the two
--                            location-TTL tables. No DROP, no TRUNCATE, no other ALTER.
-- tests/test_security_ddl.py checks that chDB parses every statement and that the grants
-- match what the code does.

CREATE ROLE IF NOT EXISTS vehicle_ingest_migrator;
GRANT CREATE TABLE, CREATE VIEW, ALTER TABLE, ALTER VIEW, SELECT, INSERT ON vehicle_ingest.* TO vehicle_ingest_migrator;

CREATE ROLE IF NOT EXISTS vehicle_ingest_gateway;

-- Ingestion: raw tables, and the per-batch aggregates (two Null tables whose views write
-- latest_signals and daily_activity as the inserting user: migration 0008).
GRANT SELECT, INSERT ON vehicle_ingest.signals TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.events TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.can_signals TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.dead_letters TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.latest_signals TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.daily_activity TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.latest_signals_batch TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.daily_activity_batch TO vehicle_ingest_gateway;

-- Feature jobs, owner registry, tag engine and CDP outbox.
GRANT SELECT, INSERT ON vehicle_ingest.trips TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.cockpit_usage TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.job_state TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.ownership TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.tag_history TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.cdp_deliveries TO vehicle_ingest_gateway;
GRANT SELECT, INSERT ON vehicle_ingest.cdp_quarantine TO vehicle_ingest_gateway;
-- Campaign exposures from the marketing side (POST /api/exposures, `vehicle-ingest exposures`).
GRANT SELECT, INSERT ON vehicle_ingest.exposures TO vehicle_ingest_gateway;

-- Start-up: the gateway checks which migrations ran (all of them, by the migrator).
GRANT SELECT, INSERT, CREATE TABLE ON vehicle_ingest.schema_migrations TO vehicle_ingest_gateway;

-- Privacy: `erase` deletes rows; the location retention setting re-issues the TTL.
GRANT ALTER DELETE ON vehicle_ingest.signals TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.events TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.can_signals TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.dead_letters TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.latest_signals TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.daily_activity TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.trips TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.cockpit_usage TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.cdp_deliveries TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.cdp_quarantine TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.tag_history TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.ownership TO vehicle_ingest_gateway;
GRANT ALTER DELETE ON vehicle_ingest.exposures TO vehicle_ingest_gateway;
-- The targets of one erasure (a Memory table, migration 0007): written, read by the deletions, then deleted.
GRANT SELECT, INSERT, ALTER DELETE ON vehicle_ingest.erase_targets TO vehicle_ingest_gateway;
GRANT ALTER TTL, ALTER MATERIALIZE TTL ON vehicle_ingest.signals TO vehicle_ingest_gateway;
GRANT ALTER TTL, ALTER MATERIALIZE TTL ON vehicle_ingest.latest_signals TO vehicle_ingest_gateway;

-- Users. Replace the passwords (or use IDENTIFIED WITH ssl_certificate CN '...').
CREATE USER IF NOT EXISTS vi_migrator IDENTIFIED WITH sha256_password BY 'REPLACE-ME-migrator'
    DEFAULT ROLE vehicle_ingest_migrator;
GRANT vehicle_ingest_migrator TO vi_migrator;
CREATE USER IF NOT EXISTS gateway IDENTIFIED WITH sha256_password BY 'REPLACE-ME-gateway'
    DEFAULT ROLE vehicle_ingest_gateway SETTINGS async_insert = 0;
GRANT vehicle_ingest_gateway TO gateway;
