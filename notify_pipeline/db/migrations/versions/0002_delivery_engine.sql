-- 0002: what the delivery engine needs beyond the runbook's columns.

-- Deferrals (quiet hours, rate limits, paused templates) do not use up retries; they are counted
-- apart, so that Meta's pair-limit advice (wait 1, 4, 16, 64 s ...) can grow with each one.
ALTER TABLE notifications ADD COLUMN deferral_count integer NOT NULL DEFAULT 0;

-- The kill switch that lives in the database: every worker and the sensor read it, so pausing
-- stops all of them at once, whatever process they run in. One row.
CREATE TABLE queue_control (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    paused     boolean     NOT NULL DEFAULT false,
    reason     text,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text
);
INSERT INTO queue_control (paused, reason, changed_by) VALUES (false, 'initial', 'migration 0002');
