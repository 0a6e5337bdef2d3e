-- 0012: counters with bounded labels. The opt-out counter was labelled with the opt-out's free-text
-- reason, and an inbound STOP reply writes its message id into that reason: every reply made a new
-- series, kept for ever. Its label now says who opted the contact out, from a fixed set of causes,
-- and a contact is counted once per change of mind, not once per reply, so one number alternating
-- STOP and START is one contact, not hundreds.

-- Who opted a contact out, from a fixed set (reporting/figures.py OPT_OUT_CAUSES lists the same):
--   reply_keyword  the contact replied STOP (or another opt-out keyword) to us: receipts/apply.py
--                  records such an opt-out with a reason starting 'replied STOP';
--   operator       `notify-pipeline contact opt-out` (actor cli:...) or opt_out_contact_job;
--   api            any other caller of mark_opted_out (a producer's own SQL);
--   unknown        not recorded (opt-outs counted before this migration, other than replies).
CREATE FUNCTION notify_opt_out_cause(p_reason text, p_actor text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_reason LIKE 'replied STOP%' THEN 'reply_keyword'
        WHEN p_actor IS NULL THEN 'unknown'
        WHEN p_actor LIKE 'cli:%' OR p_actor LIKE 'opt_out_contact_job:%' THEN 'operator'
        ELSE 'api'
    END
$$;

-- mark_opted_out as in 0004, and its event now says whether the opt-out is counted: only a contact
-- that was not opted out already, and did not opt back in during the last hour (the opt-out
-- alert's window, reporting/alerts/catalog.py HOUR_S). A STOP repeated, or a STOP soon after a
-- START, is the same contact changing its mind: recorded, not counted again. So no contact counts
-- twice in any hour, and the counter and the alert read the same number of contacts.
CREATE OR REPLACE FUNCTION mark_opted_out(p_wa_id text, p_reason text DEFAULT 'user_request') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    contact   text := notify_normalize_wa_id(p_wa_id);
    why       text := coalesce(nullif(btrim(p_reason), ''), 'user_request');
    was_out   boolean;
    came_back timestamptz;
    cancelled integer;
BEGIN
    PERFORM init_contact_preferences(contact);
    -- Locked: two opt-outs of one contact at once see each other, and only the first is counted.
    SELECT opted_out, opted_in_at INTO was_out, came_back
      FROM contact_preferences WHERE wa_id = contact FOR UPDATE;
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
    VALUES ('CONTACT_OPTED_OUT', jsonb_build_object(
        'wa_id', notify_mask_wa_id(contact), 'reason', why, 'cancelled', cancelled,
        'actor', notify_current_actor(),
        'cause', notify_opt_out_cause(why, notify_current_actor()),
        'counted', NOT was_out AND (came_back IS NULL OR came_back <= now() - interval '1 hour')));
    RETURN cancelled;
END
$$;

-- The event counter of 0008, with the opt-out counter on bounded labels: counted opt-outs only
-- (events recorded before this migration carry no 'counted' and count, as they did), labelled
-- with their cause. Worker starts and send-run durations are counted as before.
CREATE OR REPLACE FUNCTION notify_count_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH counted AS (
        INSERT INTO notify_counters AS c (name, labels, value)
        SELECT k.name, k.labels, count(*)
          FROM inserted e
         CROSS JOIN LATERAL (SELECT CASE e.event_type WHEN 'NOTIFY_WORKER_START' THEN 'worker_starts'
                                                      ELSE 'contacts_opted_out' END AS name,
                                    CASE e.event_type
                                        WHEN 'NOTIFY_WORKER_START' THEN jsonb_build_object(
                                            'trigger', coalesce(e.details->>'trigger', 'unknown'))
                                        ELSE jsonb_build_object('reason', notify_opt_out_cause(
                                            e.details->>'reason', e.details->>'actor'))
                                    END AS labels) k
         WHERE (e.event_type = 'NOTIFY_WORKER_START' AND e.details->>'phase' IS DISTINCT FROM 'heartbeat')
            OR (e.event_type = 'CONTACT_OPTED_OUT' AND e.details->'counted' IS DISTINCT FROM 'false'::jsonb)
         GROUP BY k.name, k.labels
         ORDER BY k.name, k.labels
        ON CONFLICT (name, labels) DO UPDATE SET value = c.value + EXCLUDED.value, updated_at = now()
    )
    INSERT INTO notify_histograms AS h (name, labels, bucket_le, count, sum)
    SELECT 'worker_run', jsonb_build_object('trigger', coalesce(e.details->>'trigger', 'unknown')),
           notify_bucket('worker_run', (e.details->>'duration_ms')::float8), count(*),
           sum((e.details->>'duration_ms')::float8)
      FROM inserted e
     WHERE e.event_type = 'NOTIFY_WORKER_DONE' AND jsonb_typeof(e.details->'duration_ms') = 'number'
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    ON CONFLICT (name, labels, bucket_le)
    DO UPDATE SET count = h.count + EXCLUDED.count, sum = h.sum + EXCLUDED.sum, updated_at = now();
    RETURN NULL;
END
$$;

-- Fold the opt-out series already counted into the causes, counts kept: a reply's reason names
-- its cause; for the others the counter never recorded who opted the contact out ('unknown').
-- Rows already labelled with a cause stay and receive the folded counts.
WITH folded AS (
    DELETE FROM notify_counters
     WHERE name = 'contacts_opted_out'
       AND (labels ->> 'reason' IS NULL
            OR labels ->> 'reason' NOT IN ('reply_keyword', 'operator', 'api', 'unknown')
            OR labels <> jsonb_build_object('reason', labels ->> 'reason'))
    RETURNING labels, value
)
INSERT INTO notify_counters AS c (name, labels, value)
SELECT 'contacts_opted_out', jsonb_build_object('reason', notify_opt_out_cause(labels ->> 'reason', NULL)),
       sum(value)
  FROM folded
 GROUP BY 2
 ORDER BY 2
ON CONFLICT (name, labels) DO UPDATE SET value = c.value + EXCLUDED.value, updated_at = now();
