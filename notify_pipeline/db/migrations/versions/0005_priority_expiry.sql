-- 0005: priority order in the claim, and expiry.
--
-- The claim takes the most urgent due rows first (priority DESC, then due time, then id). Its index
-- leads with priority so that a claim reads the first rows of the highest band that has due rows;
-- the 0001 due index stays for the queries that ask "what is due" regardless of priority (due.py,
-- queue depth and age metrics, alerts).
CREATE INDEX notifications_claim_idx ON notifications (priority DESC, next_attempt_at, id)
    WHERE status = 'queued';

-- A notification past expires_at is not sent: the worker fails it with last_error_code 'expired'
-- (a one-time code that arrives an hour late is worse than none). NULL: it never expires.
ALTER TABLE notifications ADD COLUMN expires_at timestamptz;

-- The expiry of a notification whose meta gives none, by its template's category. A table rather
-- than a column on whatsapp_templates: template sync from Meta rewrites those rows, and an operator
-- sets this once per category with one UPDATE. No row, or NULL: no default expiry.
CREATE TABLE template_category_defaults (
    category           text        PRIMARY KEY,
    expires_in_seconds integer,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT template_category_defaults_category_valid
        CHECK (category IN ('MARKETING', 'UTILITY', 'AUTHENTICATION')),
    CONSTRAINT template_category_defaults_expiry_range CHECK (expires_in_seconds BETWEEN 1 AND 2592000)
);
CREATE TRIGGER template_category_defaults_touch BEFORE UPDATE ON template_category_defaults
    FOR EACH ROW EXECUTE FUNCTION notify_touch_updated_at();
-- One-time codes are worthless after a few minutes (Meta's own code expiry is at most 90 minutes).
INSERT INTO template_category_defaults (category, expires_in_seconds) VALUES ('AUTHENTICATION', 600);

-- queueNotification reads meta.expires_in_seconds (or the category default above): its current
-- definition is in 0010_input_bounds.sql, the one place it is written out.
