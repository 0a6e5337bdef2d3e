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

-- queueNotification as in 0005, but a dedupe key is looked up within queue_control.dedupe_window
-- under a lock on the key: the same key with the same recipient and message returns the first id;
-- with another recipient or message it is refused (22023) naming the key. Nothing else changes.
CREATE OR REPLACE FUNCTION queuenotification(message jsonb, meta jsonb DEFAULT '{}'::jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    m         jsonb := coalesce(meta, '{}'::jsonb);
    unknown   text;
    recipient text;
    kind      text;
    content   jsonb;
    tname     text;
    lang      text;
    body      text;
    dom       text;
    ntype     text;
    due       timestamptz;
    prio      integer := 0;
    expires_s integer;
    new_id    bigint;
    dkey      text;
    window_len interval;
    first     record;
BEGIN
    IF message IS NULL OR jsonb_typeof(message) <> 'object' THEN
        RAISE EXCEPTION 'queueNotification: message must be a JSON object, got %', coalesce(jsonb_typeof(message), 'NULL')
            USING ERRCODE = '22023', HINT = 'Build it with jsonb_build_object(''to'', ..., ''template'', ...).';
    END IF;
    IF jsonb_typeof(m) <> 'object' THEN
        RAISE EXCEPTION 'queueNotification: meta must be a JSON object, got %', jsonb_typeof(m)
            USING ERRCODE = '22023';
    END IF;
    SELECT string_agg(k, ', ') INTO unknown FROM jsonb_object_keys(message) k
     WHERE k NOT IN ('to', 'template', 'text', 'type', 'messaging_product', 'recipient_type');
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'queueNotification: message has unsupported field(s): %', unknown
            USING ERRCODE = '22023', HINT = 'A message has "to" and either "template" or "text".';
    END IF;
    IF jsonb_typeof(message -> 'to') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'queueNotification: message.to is missing; it must be the recipient''s phone number as a string'
            USING ERRCODE = '22023', HINT = 'e.g. jsonb_build_object(''to'', ''+250788123456'', ...)';
    END IF;
    recipient := notify_normalize_wa_id(message ->> 'to');

    IF coalesce(jsonb_typeof(message -> 'template'), 'null') <> 'null'
       AND coalesce(jsonb_typeof(message -> 'text'), 'null') <> 'null' THEN
        RAISE EXCEPTION 'queueNotification: message has both a template and a text; send one of them'
            USING ERRCODE = '22023';
    ELSIF coalesce(jsonb_typeof(message -> 'template'), 'null') <> 'null' THEN
        kind := 'template';
        IF jsonb_typeof(message -> 'template') <> 'object' THEN
            RAISE EXCEPTION 'queueNotification: message.template must be an object {name, language, components}'
                USING ERRCODE = '22023';
        END IF;
        tname := message -> 'template' ->> 'name';
        IF tname IS NULL OR tname !~ '^[a-z0-9_]+$' OR length(tname) > 512 THEN
            RAISE EXCEPTION 'queueNotification: template name % is not a Meta template name', coalesce(quote_literal(tname), 'NULL')
                USING ERRCODE = '22023', HINT = 'Template names are lower-case letters, digits and _.';
        END IF;
        lang := CASE jsonb_typeof(message -> 'template' -> 'language')
                    WHEN 'string' THEN message -> 'template' ->> 'language'
                    WHEN 'object' THEN message -> 'template' -> 'language' ->> 'code' END;
        lang := coalesce(lang, m ->> 'language', 'en');
        IF lang !~ '^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$' THEN
            RAISE EXCEPTION 'queueNotification: template language % is not a language code such as en or en_US', quote_literal(lang)
                USING ERRCODE = '22023';
        END IF;
        IF coalesce(jsonb_typeof(message -> 'template' -> 'components'), 'array') <> 'array' THEN
            RAISE EXCEPTION 'queueNotification: template.components must be an array of header/body/button components'
                USING ERRCODE = '22023';
        END IF;
        content := jsonb_build_object('name', tname, 'language', jsonb_build_object('code', lang))
                   || CASE WHEN message -> 'template' ? 'components'
                           THEN jsonb_build_object('components', message -> 'template' -> 'components')
                           ELSE '{}'::jsonb END;
    ELSIF coalesce(jsonb_typeof(message -> 'text'), 'null') <> 'null' THEN
        kind := 'text';
        body := CASE jsonb_typeof(message -> 'text')
                    WHEN 'string' THEN message ->> 'text'
                    WHEN 'object' THEN message -> 'text' ->> 'body' END;
        IF body IS NULL OR btrim(body) = '' OR length(body) > 4096 THEN
            RAISE EXCEPTION 'queueNotification: message.text must be a non-empty string of at most 4096 characters (or {"body": ...})'
                USING ERRCODE = '22023';
        END IF;
        content := jsonb_build_object('body', body, 'preview_url',
                       coalesce(jsonb_typeof(message -> 'text' -> 'preview_url') = 'boolean'
                                AND (message -> 'text' ->> 'preview_url')::boolean, false));
        lang := m ->> 'language';
    ELSE
        RAISE EXCEPTION 'queueNotification: message needs a template or a text; it has neither'
            USING ERRCODE = '22023', HINT = 'Business-initiated messages need an approved template.';
    END IF;

    dom := coalesce(m ->> 'domain', 'core');
    IF jsonb_typeof(m -> 'domain') NOT IN ('string', 'null') OR dom !~ '^[a-z][a-z0-9_]{0,31}$' THEN
        RAISE EXCEPTION 'queueNotification: meta.domain % is not a domain name', coalesce(quote_literal(m ->> 'domain'), m -> 'domain' #>> '{}')
            USING ERRCODE = '22023', HINT = 'Use lower-case letters, digits and _, starting with a letter (core, baskets, orders, ...).';
    END IF;
    ntype := coalesce(nullif(m ->> 'type', ''), tname, 'text');
    IF length(ntype) > 100 THEN
        RAISE EXCEPTION 'queueNotification: meta.type is longer than 100 characters' USING ERRCODE = '22023';
    END IF;
    IF m ? 'quiet_hours_override' AND jsonb_typeof(m -> 'quiet_hours_override') <> 'boolean' THEN
        RAISE EXCEPTION 'queueNotification: meta.quiet_hours_override must be true or false, got %', m -> 'quiet_hours_override'
            USING ERRCODE = '22023';
    END IF;
    IF m ? 'dedupe_key' AND (jsonb_typeof(m -> 'dedupe_key') <> 'string' OR length(m ->> 'dedupe_key') NOT BETWEEN 1 AND 255) THEN
        RAISE EXCEPTION 'queueNotification: meta.dedupe_key must be a string of 1 to 255 characters'
            USING ERRCODE = '22023';
    END IF;
    IF m ? 'delay_seconds' AND m ? 'send_at' THEN
        RAISE EXCEPTION 'queueNotification: give meta.delay_seconds or meta.send_at, not both' USING ERRCODE = '22023';
    ELSIF m ? 'delay_seconds' THEN
        IF jsonb_typeof(m -> 'delay_seconds') <> 'number' OR (m ->> 'delay_seconds')::numeric NOT BETWEEN 0 AND 2592000 THEN
            RAISE EXCEPTION 'queueNotification: meta.delay_seconds must be a number of seconds from 0 to 2592000 (30 days)'
                USING ERRCODE = '22023';
        END IF;
        due := now() + make_interval(secs => (m ->> 'delay_seconds')::double precision);
    ELSIF m ? 'send_at' THEN
        BEGIN
            due := (m ->> 'send_at')::timestamptz;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'queueNotification: meta.send_at % is not a timestamp', quote_literal(m ->> 'send_at')
                USING ERRCODE = '22023', HINT = 'Use ISO 8601 with a zone, e.g. 2026-01-31T08:00:00+02:00.';
        END;
    END IF;
    IF m ? 'priority' THEN
        IF jsonb_typeof(m -> 'priority') <> 'number' OR (m ->> 'priority') !~ '^-?[0-9]+$'
           OR (m ->> 'priority')::numeric NOT BETWEEN -100 AND 100 THEN
            RAISE EXCEPTION 'queueNotification: meta.priority must be a whole number from -100 to 100' USING ERRCODE = '22023';
        END IF;
        prio := (m ->> 'priority')::integer;
    END IF;
    IF m ? 'expires_in_seconds' THEN
        -- Whole seconds only: jsonb keeps 600.0 as written, so the text form tells 600 from 600.5.
        IF jsonb_typeof(m -> 'expires_in_seconds') <> 'number' OR (m ->> 'expires_in_seconds') !~ '^[0-9]+$'
           OR (m ->> 'expires_in_seconds')::numeric NOT BETWEEN 1 AND 2592000 THEN
            RAISE EXCEPTION 'queueNotification: meta.expires_in_seconds must be a whole number of seconds from 1 to 2592000 (30 days), got %', m -> 'expires_in_seconds'
                USING ERRCODE = '22023',
                      HINT = 'Leave it out to use the default of the template''s category (template_category_defaults).';
        END IF;
        expires_s := (m ->> 'expires_in_seconds')::integer;
    ELSIF kind = 'template' THEN
        -- A template not (yet) in whatsapp_templates has no category, hence no default expiry.
        SELECT d.expires_in_seconds INTO expires_s
          FROM whatsapp_templates t JOIN template_category_defaults d ON d.category = t.category
         WHERE t.template_name = tname AND t.language = lang;
    END IF;

    dkey := m ->> 'dedupe_key';
    content := jsonb_build_object('messaging_product', 'whatsapp', 'to', recipient, 'type', kind, kind, content);
    IF dkey IS NOT NULL THEN
        -- One enqueue per key at a time (the two-key advisory space, apart from the sender locks'
        -- one-key space): the second waits for the first to commit, then its lookup sees that row.
        PERFORM pg_advisory_xact_lock(20260914, hashtext(dkey));
        SELECT coalesce(dedupe_window, interval '24 hours') INTO window_len FROM queue_control;
        window_len := coalesce(window_len, interval '24 hours');
        SELECT n.id, n.to_wa_id, n.payload, n.created_at INTO first
          FROM notifications n
         WHERE n.dedupe_key = dkey AND n.created_at > now() - window_len
         ORDER BY n.created_at, n.id
         LIMIT 1;
        IF FOUND THEN
            IF first.to_wa_id = recipient AND first.payload = content THEN
                RETURN first.id;
            END IF;
            RAISE EXCEPTION 'queueNotification: dedupe key % already names notification % (queued % s ago) with a different %; nothing was queued',
                quote_literal(dkey), first.id, floor(extract(epoch FROM now() - first.created_at))::bigint,
                CASE WHEN first.to_wa_id <> recipient THEN 'recipient' ELSE 'message' END
                USING ERRCODE = '22023',
                      HINT = format('A key names one message for %s (queue_control.dedupe_window): give this message a key of its own.', window_len);
        END IF;
    END IF;

    INSERT INTO notifications (to_wa_id, template_name, language, notification_type, domain, payload,
                               priority, next_attempt_at, expires_at, quiet_hours_override,
                               correlation_id, campaign_id, dedupe_key)
    VALUES (recipient, tname, lang, ntype, dom, content,
            -- The clock starts when the message is due, so a scheduled message does not expire unsent
            -- before its time has even come.
            prio, due, coalesce(due, now()) + make_interval(secs => expires_s),
            coalesce((m ->> 'quiet_hours_override')::boolean, false),
            coalesce(nullif(m ->> 'correlation_id', ''), gen_random_uuid()::text),
            nullif(m ->> 'campaign_id', ''), dkey)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

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
