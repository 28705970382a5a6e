-- Erasure scratch table for a ClickHouse CLUSTER: the counterpart of ../0007_erase.sql.
--
-- `erase_targets` is node-local on purpose (Memory, no `_local`/Distributed pair): it holds the
-- VINs and owner id of one erasure while it runs, and must never be written to disk or to Keeper.
-- It exists so the schemas match. `vehicle-ingest erase` itself refuses the cluster schema before
-- changing anything: its tables are Distributed, which take no ALTER ... DELETE (docs/SECURITY.md,
-- "Erase on a cluster").
--
-- The single-node file also lowers the part cleanup delay of the erased tables; the cluster keeps
-- the defaults, because on Replicated tables every cleanup round also reads and trims Keeper
-- (logs, block hashes) and erase does not run here.

CREATE TABLE IF NOT EXISTS erase_targets ON CLUSTER '{cluster}'
(
    erase_id  UUID,                               -- one erasure; concurrent erasures never mix
    kind      Enum8('vin' = 1, 'owner' = 2),
    id        String                              -- a VIN or an owner id
)
ENGINE = Memory;
