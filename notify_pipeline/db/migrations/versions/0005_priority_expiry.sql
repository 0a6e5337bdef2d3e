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

-- queueNotification as in 0001 (its comment there lists the meta keys), plus meta.expires_in_seconds:
-- validated, else the default of the template's category, stored as expires_at. Nothing else changes.
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

    INSERT INTO notifications (to_wa_id, template_name, language, notification_type, domain, payload,
                               priority, next_attempt_at, expires_at, quiet_hours_override,
                               correlation_id, campaign_id, dedupe_key)
    VALUES (recipient, tname, lang, ntype, dom,
            jsonb_build_object('messaging_product', 'whatsapp', 'to', recipient, 'type', kind, kind, content),
            -- The clock starts when the message is due, so a scheduled message does not expire unsent
            -- before its time has even come.
            prio, due, coalesce(due, now()) + make_interval(secs => expires_s),
            coalesce((m ->> 'quiet_hours_override')::boolean, false),
            coalesce(nullif(m ->> 'correlation_id', ''), gen_random_uuid()::text),
            nullif(m ->> 'campaign_id', ''), m ->> 'dedupe_key')
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id INTO new_id;

    IF new_id IS NULL THEN
        SELECT id INTO new_id FROM notifications WHERE dedupe_key = m ->> 'dedupe_key';
    END IF;
    RETURN new_id;
END
$$;
