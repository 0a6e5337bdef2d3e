-- 0009: send policy. Deferrals counted by their cause, a late 131049 re-queued once for a
-- MARKETING template, dedupe keys unique for a window, and what template webhooks need.

-- ---------------------------------------------------------------------------------------------
-- Deferrals by cause: {"131056": 3, "quiet_hours": 1}. deferral_count stays the total. The
-- database counts them as they are written back (the reason is last_error_code), so every writer
-- of a deferral is counted the same way; a writer that sets `deferrals` itself is left alone.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE notifications ADD COLUMN deferrals jsonb NOT NULL DEFAULT '{}'::jsonb
    CONSTRAINT notifications_deferrals_is_object CHECK (jsonb_typeof(deferrals) = 'object');

CREATE FUNCTION notifications_count_deferrals() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    cause text := coalesce(NEW.last_error_code, 'unknown');
BEGIN
    NEW.deferrals := jsonb_set(NEW.deferrals, ARRAY[cause],
        to_jsonb(coalesce((OLD.deferrals ->> cause)::integer, 0) + NEW.deferral_count - OLD.deferral_count));
    RETURN NEW;
END
$$;

CREATE TRIGGER notifications_count_deferrals BEFORE UPDATE ON notifications
    FOR EACH ROW
    WHEN (NEW.status = 'queued' AND NEW.deferral_count > OLD.deferral_count
          AND NEW.deferrals IS NOT DISTINCT FROM OLD.deferrals)
    EXECUTE FUNCTION notifications_count_deferrals();

-- ---------------------------------------------------------------------------------------------
-- 131049 after acceptance (a status webhook: Meta's per-user marketing cap). A MARKETING
-- template's row is queued again for 24 hours after the failure, at most `max_deferrals` times
-- (the trigger's argument: 131049's bound in whatsapp/errors.py, which a test keeps equal), then
-- it stays failed and says so. However the status is applied (on arrival, when the drain records
-- the message id later, or by the periodic retry of waiting statuses), this trigger sees it.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION notifications_late_marketing_cap() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bound   integer := TG_ARGV[0]::integer;
    used    integer := coalesce((OLD.deferrals ->> '131049')::integer, 0);
    is_mkt  boolean;
BEGIN
    SELECT t.category = 'MARKETING' INTO is_mkt FROM whatsapp_templates t
     WHERE t.template_name = NEW.template_name AND t.language = coalesce(NEW.language, 'en');
    IF NOT coalesce(is_mkt, false) THEN
        RETURN NEW;
    END IF;
    IF used >= bound THEN
        NEW.error_message := format('%s; not delivered again after %s wait(s) of 24 hours: failed',
                                    coalesce(NEW.error_message, '(131049) marketing cap'), used);
        RETURN NEW;
    END IF;
    NEW.status := 'queued';
    NEW.next_attempt_at := greatest(coalesce(NEW.failed_late_at, now()), now()) + interval '24 hours';
    NEW.error_message := format('%s; queued again for 24 hours later (%s of %s)',
                                coalesce(NEW.error_message, '(131049) marketing cap'), used + 1, bound);
    NEW.deferral_count := OLD.deferral_count + 1;
    NEW.deferrals := jsonb_set(OLD.deferrals, '{131049}', to_jsonb(used + 1));
    -- The next send is a new message: its receipts start afresh.
    NEW.wa_message_id := NULL;
    NEW.sent_at := NULL;
    NEW.delivery_status := NULL;
    NEW.delivered_at := NULL;
    NEW.read_at := NULL;
    NEW.failed_late_at := NULL;
    NEW.pricing_category := NULL;
    NEW.billable := NULL;
    NEW.locked_at := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER notifications_late_marketing_cap BEFORE UPDATE ON notifications
    FOR EACH ROW
    WHEN (OLD.status = 'sent' AND NEW.status = 'failed' AND NEW.last_error_code = '131049')
    EXECUTE FUNCTION notifications_late_marketing_cap('1');

-- ---------------------------------------------------------------------------------------------
-- Dedupe keys: unique per sender (this queue database is one sender's) for a window, 24 hours by
-- default. A key's old rows keep it; after the window it names a new message.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE queue_control ADD COLUMN dedupe_window interval NOT NULL DEFAULT interval '24 hours'
    CONSTRAINT queue_control_dedupe_window_range
        CHECK (dedupe_window BETWEEN interval '1 minute' AND interval '365 days');
ALTER TABLE notifications DROP CONSTRAINT notifications_dedupe_key_key;
CREATE INDEX notifications_dedupe_key_idx ON notifications (dedupe_key, created_at) WHERE dedupe_key IS NOT NULL;

-- queueNotification scopes dedupe keys to queue_control.dedupe_window: its current definition
-- is in 0010_input_bounds.sql.

-- ---------------------------------------------------------------------------------------------
-- Templates: Meta's quality rating (message_template_quality_update), and why a template was
-- switched off, so a template sync switched off (no longer listed at Meta) comes back on by
-- itself when Meta lists it, or announces it, APPROVED again; one an operator switched off stays off.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE whatsapp_templates
    ADD COLUMN quality_score   text,
    ADD COLUMN inactive_reason text;

-- Templates earlier syncs switched off, from their own reports.
UPDATE whatsapp_templates t SET inactive_reason = 'not_at_meta'
 WHERE NOT t.is_active AND EXISTS (
       SELECT 1 FROM observability_events e
        WHERE e.event_type = 'TEMPLATES_SYNCED'
          AND jsonb_typeof(e.details -> 'switched_off') = 'array'
          AND e.details -> 'switched_off' ? (t.template_name || ' (' || t.language || ')'));
