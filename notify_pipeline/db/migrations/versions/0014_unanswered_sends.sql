-- 0014: Unanswered sends matched to their receipts (receipts/reconcile.py).
--
-- A send that got no usable answer (a timeout after the request left, a gateway's 502 or 504, a
-- 200 without a message id) may have reached Meta. Its row waits, queued with the answer's label in
-- last_error_code and next_attempt_at at the end of the wait (engine/outcomes.py), for a status
-- webhook naming it: Meta echoes the send's biz_opaque_callback_data, `np1:<notification id>`,
-- in the message's statuses. Such a status, for a message no row carries, to the row's recipient
-- and through our sender number (checked by `serve` before it stores notification_id), records the
-- row sent with that message id; the statuses then apply as any others (the trigger of 0006).
-- A row that already carries another message id keeps it: the status's message was a second send
-- of the row, recorded in duplicate_wa_message_ids and counted once in duplicate_sends.

-- The notification a status names by its callback data, when it came to our sender number.
ALTER TABLE webhook_events ADD COLUMN notification_id bigint;
-- Waiting statuses that name a notification: what the retry of serve's timer walks. Statuses of
-- other apps' messages never enter it.
CREATE INDEX webhook_events_naming_idx ON webhook_events (id)
    WHERE applied_at IS NULL AND kind = 'status' AND notification_id IS NOT NULL;

-- Message ids Meta accepted for this notification besides wa_message_id: a send sent twice.
ALTER TABLE notifications ADD COLUMN duplicate_wa_message_ids text[];

-- Match the given status events to the rows they name. `unanswered` holds the labels of answers
-- after which a queued row waits for its receipt (engine/outcomes.py AWAITS_RECEIPT). Returns how
-- many rows were recorded sent and how many second sends were found.
CREATE FUNCTION notify_reconcile_statuses(event_ids bigint[], unanswered text[])
RETURNS TABLE (confirmed integer, duplicates integer)
LANGUAGE plpgsql AS $$
DECLARE
    took integer;
    more integer;
    doubled integer := 0;
BEGIN
    -- A named status to another number, or naming no row, is not taken: it leaves the naming
    -- index and waits for its message id like any other.
    UPDATE webhook_events e
       SET notification_id = NULL,
           outcome = format('waiting: not taken for notification %s (%s)', e.notification_id,
                            CASE WHEN EXISTS (SELECT 1 FROM notifications n WHERE n.id = e.notification_id)
                                 THEN 'sent to another recipient' ELSE 'no such notification' END)
     WHERE e.id = ANY(event_ids) AND e.kind = 'status' AND e.applied_at IS NULL
       AND e.notification_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM notifications n
                        WHERE n.id = e.notification_id AND n.to_wa_id = '+' || e.wa_id);

    -- Confirmed: a row with no message id whose send went unanswered (waiting, or being sent
    -- again), or that failed meanwhile (Meta had it after all), takes the earliest named message.
    WITH named AS (
        SELECT DISTINCT ON (e.notification_id) e.notification_id AS id, e.wa_message_id, e.status_at
          FROM webhook_events e
         WHERE e.id = ANY(event_ids) AND e.kind = 'status' AND e.applied_at IS NULL
           AND e.notification_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM notifications x WHERE x.wa_message_id = e.wa_message_id)
         ORDER BY e.notification_id, e.status_at, e.id
    )
    UPDATE notifications n
       SET status = 'sent', wa_message_id = m.wa_message_id,
           sent_at = least(coalesce(m.status_at, now()), now()),
           next_attempt_at = NULL, locked_at = NULL, last_error_code = NULL, error_message = NULL
      FROM named m
     WHERE n.id = m.id AND n.wa_message_id IS NULL
       AND (n.status = 'failed' OR (n.status = 'queued' AND n.last_error_code = ANY(unanswered)));
    GET DIAGNOSTICS took = ROW_COUNT;

    -- Second sends: a row that carries another message id keeps it; each other message id is
    -- recorded once (one per row and round, so the count is exact under concurrent webhooks).
    LOOP
        WITH second AS (
            SELECT DISTINCT ON (e.notification_id) e.notification_id AS id, e.wa_message_id
              FROM webhook_events e
              JOIN notifications n ON n.id = e.notification_id
             WHERE e.id = ANY(event_ids) AND e.kind = 'status' AND e.applied_at IS NULL
               AND e.notification_id IS NOT NULL
               AND n.wa_message_id IS NOT NULL AND n.wa_message_id <> e.wa_message_id
               AND NOT (e.wa_message_id = ANY(coalesce(n.duplicate_wa_message_ids, '{}')))
               AND NOT EXISTS (SELECT 1 FROM notifications x WHERE x.wa_message_id = e.wa_message_id)
             ORDER BY e.notification_id, e.wa_message_id
        )
        UPDATE notifications n
           SET duplicate_wa_message_ids = array_append(coalesce(n.duplicate_wa_message_ids, '{}'), s.wa_message_id)
          FROM second s
         WHERE n.id = s.id AND n.wa_message_id IS NOT NULL AND n.wa_message_id <> s.wa_message_id
           AND NOT (s.wa_message_id = ANY(coalesce(n.duplicate_wa_message_ids, '{}')));
        GET DIAGNOSTICS more = ROW_COUNT;
        EXIT WHEN more = 0;
        doubled := doubled + more;
    END LOOP;

    -- The second send's statuses are settled, not applied: the row's receipts are its own message's.
    UPDATE webhook_events e
       SET applied_at = now(),
           outcome = format('duplicate: notification %s carries %s; this message was a second send of it',
                            n.id, n.wa_message_id)
      FROM notifications n
     WHERE e.id = ANY(event_ids) AND e.kind = 'status' AND e.applied_at IS NULL
       AND n.id = e.notification_id AND e.wa_message_id = ANY(n.duplicate_wa_message_ids);

    IF took > 0 THEN
        PERFORM notify_count('receipt_confirmed', '{}'::jsonb, took);
    END IF;
    IF doubled > 0 THEN
        PERFORM notify_count('duplicate_sends', '{}'::jsonb, doubled);
    END IF;
    RETURN QUERY SELECT took, doubled;
END
$$;
