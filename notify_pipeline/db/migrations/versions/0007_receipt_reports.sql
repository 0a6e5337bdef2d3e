-- 0007: the daily per-domain summary gains what Meta reported after accepting each message (status
-- webhooks, 0006). Rows built before this migration keep NULL here until their day is rebuilt.

ALTER TABLE daily_domain_summary
    -- Messages Meta accepted: sent + late_failed (a late failure is 'failed' now, counted in failed).
    ADD COLUMN delivered               integer,           -- delivered_at set (read implies delivered)
    ADD COLUMN read                    integer,           -- read_at set
    ADD COLUMN late_failed             integer,           -- failed after Meta accepted it (failed_late_at)
    ADD COLUMN delivery_rate           double precision,  -- delivered / accepted; NULL when none accepted
    ADD COLUMN read_rate               double precision,  -- read / accepted
    ADD COLUMN late_failure_rate       double precision,  -- late_failed / accepted
    ADD COLUMN delivery_latency_p50_ms double precision,  -- sent_at to delivered_at, delivered rows only
    ADD COLUMN delivery_latency_p95_ms double precision,
    ADD COLUMN delivery_latency_p99_ms double precision;
