-- 0004: what a long-lived drain needs: to be woken, to be seen alive, to be told to stop sending a
-- row it holds, and a hold per sender that an auth or account failure sets.

-- ---------------------------------------------------------------------------------------------
-- Wake-ups. One payload-less NOTIFY per statement (PostgreSQL folds duplicates within a
-- transaction), so a bulk enqueue costs one notification, not one per row.
--   notify_queue:   rows became due or were added (enqueue, resume, retry-failed, sweep).
--   notify_control: something a drain must re-check now (pause, hold, opt-out, template change,
--                   or a claimed row taken away from under it, as the runbook's stop SQL does).
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION notify_wake_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('notify_queue', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER notifications_wake_insert AFTER INSERT ON notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_wake_on_insert();

CREATE FUNCTION notify_wake_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A drain's own writes (its actor is send:...) never wake it: it knows what it deferred.
    IF notify_current_actor() NOT LIKE 'send:%' AND EXISTS (
        SELECT 1 FROM updated n JOIN previous o ON o.id = n.id
         WHERE n.status = 'queued' AND n.locked_at IS NULL
           AND (o.status <> 'queued' OR o.locked_at IS NOT NULL
                OR n.next_attempt_at < o.next_attempt_at)) THEN
        PERFORM pg_notify('notify_queue', '');
    END IF;
    -- A claimed row that left the queue while still locked: someone else stopped or cancelled it.
    IF EXISTS (
        SELECT 1 FROM updated n JOIN previous o ON o.id = n.id
         WHERE o.status = 'queued' AND o.locked_at IS NOT NULL
           AND n.status <> 'queued' AND n.locked_at IS NOT NULL) THEN
        PERFORM pg_notify('notify_control', 'revoked');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notifications_wake_update AFTER UPDATE ON notifications
    REFERENCING OLD TABLE AS previous NEW TABLE AS updated
    FOR EACH STATEMENT EXECUTE FUNCTION notify_wake_on_update();

CREATE FUNCTION notify_control_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('notify_control', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER queue_control_changed AFTER INSERT OR UPDATE OR DELETE ON queue_control
    FOR EACH STATEMENT EXECUTE FUNCTION notify_control_changed();
CREATE TRIGGER whatsapp_templates_changed AFTER INSERT OR UPDATE OR DELETE ON whatsapp_templates
    FOR EACH STATEMENT EXECUTE FUNCTION notify_control_changed();
-- Only opt-outs matter to a drain; quiet-hours edits wait for the next claim.
CREATE TRIGGER contact_preferences_opted_out AFTER INSERT OR UPDATE OF opted_out ON contact_preferences
    FOR EACH ROW WHEN (NEW.opted_out) EXECUTE FUNCTION notify_control_changed();

-- ---------------------------------------------------------------------------------------------
-- Drains: one row each, written at start, every few seconds while alive, and at the end. The
-- sensor tells a dead send run (SIGKILL, OOM) by a stale heartbeat and a sender lock nobody holds;
-- the next drain gives a dead drain's claimed rows back at once instead of a lease later.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE send_workers (
    worker_id        text        PRIMARY KEY,
    sender           text        NOT NULL,
    run_id           text,
    host             text        NOT NULL,
    pid              integer     NOT NULL,
    backend_pid      integer,     -- the control connection's server process: it holds the sender lock
    trigger          text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    lifetime_ends_at timestamptz,
    ended_at         timestamptz,
    stopped_by       text,
    report           jsonb
);
CREATE INDEX send_workers_sender_idx ON send_workers (sender, started_at DESC);

-- ---------------------------------------------------------------------------------------------
-- Holds: a sender whose credentials (auth) or account (368, 131031, ...) Meta refused. Kept apart
-- from the operator's pause in queue_control, so lifting one never lifts the other.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE sender_holds (
    sender  text        PRIMARY KEY,
    kind    text        NOT NULL CONSTRAINT sender_holds_kind_valid CHECK (kind IN ('auth', 'account')),
    code    text,
    reason  text        NOT NULL,
    since   timestamptz NOT NULL DEFAULT now(),
    set_by  text
);

CREATE TRIGGER sender_holds_changed AFTER INSERT OR UPDATE OR DELETE ON sender_holds
    FOR EACH STATEMENT EXECUTE FUNCTION notify_control_changed();

-- ---------------------------------------------------------------------------------------------
-- An opt-out cancels the contact's rows even while a drain holds them: the drain learns of it
-- (notify_control) and drops them before sending. A message already on its way is recorded as
-- sent, with the audit log saying it went out after the opt-out.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION mark_opted_out(p_wa_id text, p_reason text DEFAULT 'user_request') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    contact   text := notify_normalize_wa_id(p_wa_id);
    why       text := coalesce(nullif(btrim(p_reason), ''), 'user_request');
    cancelled integer;
BEGIN
    PERFORM init_contact_preferences(contact);
    UPDATE contact_preferences
       SET opted_out = true,
           opt_out_at = CASE WHEN opted_out THEN opt_out_at ELSE now() END,
           opt_out_reason = why
     WHERE wa_id = contact;
    UPDATE notifications
       SET status = 'failed',
           last_error_code = 'opted_out',
           error_message = format('Contact opted out (%s): cancelled before sending', why),
           next_attempt_at = NULL
     WHERE to_wa_id = contact AND status = 'queued';
    GET DIAGNOSTICS cancelled = ROW_COUNT;
    INSERT INTO observability_events (event_type, details)
    VALUES ('CONTACT_OPTED_OUT', jsonb_build_object('wa_id', notify_mask_wa_id(contact), 'reason', why,
                                                    'cancelled', cancelled, 'actor', notify_current_actor()));
    RETURN cancelled;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The audit trigger, again: a lease extended by the drain that holds the row is not a claim, and
-- a message accepted after its row was stopped or cancelled says so ('sent_after').
-- ---------------------------------------------------------------------------------------------

-- The audit trigger learns of lease extensions (not a claim) and of messages accepted after their
-- row was stopped ('sent_after'): its current definition is in 0008_counters.sql, the one place
-- it is written out (these migrations land together).
