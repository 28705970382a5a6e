-- Read-only access for analyst queries on a ClickHouse server: the gateway's `query_store` DSN,
-- e.g. http://vi_reader:PASSWORD@clickhouse:8123/vehicle_ingest (not applied by `Store.migrate()`:
-- an administrator runs this once, after replacing the password).
--
-- Defence in depth behind the gateway's query gate (vehicle_ingest.query_gate), which already
-- refuses everything but one read statement. On a server the same limits the gateway applies to
-- its embedded read sessions are fixed in a settings profile no session can change (CONST), and
-- the role may only SELECT: no INSERT, ALTER, DROP, no CREATE TEMPORARY TABLE (which every table
-- function needs), no FILE/URL/REMOTE sources, no SYSTEM or KILL.
-- tests/test_security_ddl.py checks that chDB parses every statement and that the profile holds
-- the gateway's default query limits.

CREATE SETTINGS PROFILE IF NOT EXISTS vehicle_ingest_reads SETTINGS
    readonly = 1 CONST,
    max_memory_usage = 1073741824 CONST,
    max_execution_time = 30 CONST,
    max_result_rows = 100000 CONST,
    max_result_bytes = 67108864 CONST,
    result_overflow_mode = 'throw' CONST,
    max_threads = 1 CONST;

CREATE ROLE IF NOT EXISTS vehicle_ingest_reader;
GRANT SELECT ON vehicle_ingest.* TO vehicle_ingest_reader;
-- Except the targets of an erasure in progress (VINs, an owner id): an analyst must not learn whom.
REVOKE SELECT ON vehicle_ingest.erase_targets FROM vehicle_ingest_reader;

-- Replace the password (or use IDENTIFIED WITH ssl_certificate CN '...').
CREATE USER IF NOT EXISTS vi_reader IDENTIFIED WITH sha256_password BY 'REPLACE-ME-reader'
    DEFAULT ROLE vehicle_ingest_reader SETTINGS PROFILE 'vehicle_ingest_reads';
GRANT vehicle_ingest_reader TO vi_reader;
