-- 0010: every input bounded where every path goes through (queueNotification), and no phone
-- number in the functions' error texts (the server log and the callers' logs keep them).
--
-- queueNotification as in 0009, plus: message and meta sizes capped; the recipient's country
-- calling code must be an assigned one (+999... reaches nobody); meta.language checked for text
-- messages too; correlation_id and campaign_id strings of at most 255 characters without control
-- characters; send_at finite and within 1 day ago .. 30 days ahead (as delay_seconds). Every
-- refusal is 22023 with a hint, and nothing is written.

-- ---------------------------------------------------------------------------------------------
-- Country calling codes assigned by the ITU (E.164) to countries, territories and the mobile
-- satellite and international networks (870, 881-883); not the freephone, shared-cost, premium
-- and other service codes (800, 808, 878, 888, 979, 991) nor the spare ones (999, 210, 259, ...).
-- The codes are prefix-free, so a number has at most one. Returns it, or NULL.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION notify_country_code(wa_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT code FROM unnest(ARRAY[
        '1', '7', '20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46', '47', '48', '49',
        '51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63', '64', '65', '66', '81', '82', '84', '86', '90',
        '91', '92', '93', '94', '95', '98', '211', '212', '213', '216', '218', '220', '221', '222', '223', '224', '225', '226', '227', '228',
        '229', '230', '231', '232', '233', '234', '235', '236', '237', '238', '239', '240', '241', '242', '243', '244', '245', '246', '247', '248',
        '249', '250', '251', '252', '253', '254', '255', '256', '257', '258', '260', '261', '262', '263', '264', '265', '266', '267', '268', '269',
        '290', '291', '297', '298', '299', '350', '351', '352', '353', '354', '355', '356', '357', '358', '359', '370', '371', '372', '373', '374',
        '375', '376', '377', '378', '380', '381', '382', '383', '385', '386', '387', '389', '420', '421', '423', '500', '501', '502', '503', '504',
        '505', '506', '507', '508', '509', '590', '591', '592', '593', '594', '595', '596', '597', '598', '599', '670', '672', '673', '674', '675',
        '676', '677', '678', '679', '680', '681', '682', '683', '685', '686', '687', '688', '689', '690', '691', '692', '850', '852', '853', '855',
        '856', '870', '880', '881', '882', '883', '886', '960', '961', '962', '963', '964', '965', '966', '967', '968', '970', '971', '972', '973',
        '974', '975', '976', '977', '992', '993', '994', '995', '996', '997', '998'
    ]) AS code
     WHERE ltrim(wa_id, '+') LIKE code || '%'
     LIMIT 1
$$;

-- As in 0001, but the refused value is masked (it is often a real number with a typo) and a long
-- one is named by its length only.
CREATE OR REPLACE FUNCTION notify_normalize_wa_id(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    cleaned text := regexp_replace(btrim(coalesce(raw, '')), '[[:space:]().-]', '', 'g');
BEGIN
    IF cleaned !~ '^\+?[1-9][0-9]{6,14}$' THEN
        RAISE EXCEPTION 'recipient % is not a WhatsApp number',
            CASE WHEN raw IS NULL THEN 'NULL'
                 WHEN length(raw) > 40 THEN format('(%s characters)', length(raw))
                 ELSE quote_literal(notify_mask_wa_id(raw)) END
            USING ERRCODE = '22023',
                  HINT = 'Give the number in international form with its country code, e.g. +250788123456.';
    END IF;
    RETURN '+' || ltrim(cleaned, '+');
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Etc/GMT+N zones have the inverted POSIX sign (Etc/GMT+5 is UTC-05:00): a contact's quiet hours
-- would be off by twice the offset. New or changed time zones of that form are refused; rows that
-- hold one already keep working (an opt-out still updates them). Etc/UTC and Etc/GMT stay valid.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION contact_preferences_refuse_etc_offsets() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone ~ '^Etc/GMT[+-][0-9]+$'
       AND (TG_OP = 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone) THEN
        RAISE EXCEPTION 'time zone % is a fixed offset with an inverted sign (it means UTC%:00)',
            quote_literal(NEW.timezone), translate(substr(NEW.timezone, 8, 1), '+-', '-+') || substr(NEW.timezone, 9)
            USING ERRCODE = '22023',
                  HINT = 'Use the contact''s Area/Location zone, e.g. America/Bogota or Asia/Dhaka (Etc/UTC for UTC).';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER contact_preferences_refuse_etc_offsets BEFORE INSERT OR UPDATE OF timezone ON contact_preferences
    FOR EACH ROW EXECUTE FUNCTION contact_preferences_refuse_etc_offsets();

-- An operator's reason for a stop or a resume: one line of at most 500 characters (the CLI refuses
-- an empty one). NOT VALID: rows written before stay as they are.
ALTER TABLE queue_control ADD CONSTRAINT queue_control_reason_length
    CHECK (reason IS NULL OR length(reason) <= 500) NOT VALID;

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
    cid       text;
    camp      text;
BEGIN
    IF message IS NULL OR jsonb_typeof(message) <> 'object' THEN
        RAISE EXCEPTION 'queueNotification: message must be a JSON object, got %', coalesce(jsonb_typeof(message), 'NULL')
            USING ERRCODE = '22023', HINT = 'Build it with jsonb_build_object(''to'', ..., ''template'', ...).';
    END IF;
    IF jsonb_typeof(m) <> 'object' THEN
        RAISE EXCEPTION 'queueNotification: meta must be a JSON object, got %', jsonb_typeof(m)
            USING ERRCODE = '22023', HINT = 'Pass a JSON object (or NULL for none), e.g. ''{"domain": "orders"}''.';
    END IF;
    IF octet_length(message::text) > 65536 OR octet_length(m::text) > 16384 THEN
        RAISE EXCEPTION 'queueNotification: % is % bytes of JSON; at most %',
            CASE WHEN octet_length(message::text) > 65536 THEN 'message' ELSE 'meta' END,
            greatest(octet_length(message::text), octet_length(m::text)),
            CASE WHEN octet_length(message::text) > 65536 THEN 65536 ELSE 16384 END
            USING ERRCODE = '22023',
                  HINT = 'A WhatsApp message is small: text up to 4096 characters, template parameters up to 1024 each.';
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
    IF notify_country_code(recipient) IS NULL THEN
        RAISE EXCEPTION 'queueNotification: recipient % has no assigned country calling code', notify_mask_wa_id(recipient)
            USING ERRCODE = '22023',
                  HINT = 'Give the number with its country code, e.g. +250 (Rwanda) or +1 (North America); codes such as +999 reach nobody.';
    END IF;

    IF coalesce(jsonb_typeof(message -> 'template'), 'null') <> 'null'
       AND coalesce(jsonb_typeof(message -> 'text'), 'null') <> 'null' THEN
        RAISE EXCEPTION 'queueNotification: message has both a template and a text; send one of them'
            USING ERRCODE = '22023', HINT = 'A message has a template (business-initiated) or a text (within 24 hours of the user''s last message).';
    ELSIF coalesce(jsonb_typeof(message -> 'template'), 'null') <> 'null' THEN
        kind := 'template';
        IF jsonb_typeof(message -> 'template') <> 'object' THEN
            RAISE EXCEPTION 'queueNotification: message.template must be an object {name, language, components}'
                USING ERRCODE = '22023', HINT = 'e.g. {"name": "welcome_message", "language": {"code": "en"}, "components": [...]}.';
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
            RAISE EXCEPTION 'queueNotification: template language % is not a language code such as en or en_US', quote_literal(left(lang, 40))
                USING ERRCODE = '22023', HINT = 'e.g. en, fr, rw or pt_BR, as the approved template''s language.';
        END IF;
        IF coalesce(jsonb_typeof(message -> 'template' -> 'components'), 'array') <> 'array' THEN
            RAISE EXCEPTION 'queueNotification: template.components must be an array of header/body/button components'
                USING ERRCODE = '22023', HINT = 'e.g. [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}].';
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
                USING ERRCODE = '22023', HINT = 'Split a longer text into several messages.';
        END IF;
        content := jsonb_build_object('body', body, 'preview_url',
                       coalesce(jsonb_typeof(message -> 'text' -> 'preview_url') = 'boolean'
                                AND (message -> 'text' ->> 'preview_url')::boolean, false));
        lang := m ->> 'language';
        IF m ? 'language' AND (jsonb_typeof(m -> 'language') <> 'string' OR lang !~ '^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$') THEN
            RAISE EXCEPTION 'queueNotification: meta.language % is not a language code such as en or en_US', coalesce(quote_literal(left(lang, 40)), 'null')
                USING ERRCODE = '22023', HINT = 'Leave it out, or give the language the text is written in (en, fr, rw, pt_BR, ...).';
        END IF;
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
        RAISE EXCEPTION 'queueNotification: meta.type is longer than 100 characters' USING ERRCODE = '22023', HINT = 'A short name of the kind of message, e.g. order_paid.';
    END IF;
    IF m ? 'quiet_hours_override' AND jsonb_typeof(m -> 'quiet_hours_override') <> 'boolean' THEN
        RAISE EXCEPTION 'queueNotification: meta.quiet_hours_override must be true or false, got %', m -> 'quiet_hours_override'
            USING ERRCODE = '22023', HINT = 'Leave it out (false), or pass true to send even during the contact''s quiet hours.';
    END IF;
    IF m ? 'dedupe_key' AND (jsonb_typeof(m -> 'dedupe_key') <> 'string' OR length(m ->> 'dedupe_key') NOT BETWEEN 1 AND 255) THEN
        RAISE EXCEPTION 'queueNotification: meta.dedupe_key must be a string of 1 to 255 characters'
            USING ERRCODE = '22023', HINT = 'A key of your own naming this one message, e.g. order-42:paid.';
    END IF;
    -- Free-text identifiers: strings of at most 255 characters without control characters (an
    -- index entry, a log line and a report cell each; a longer one failed with 54000 or bloated rows).
    IF m ? 'correlation_id' AND jsonb_typeof(m -> 'correlation_id') <> 'null' THEN
        cid := m ->> 'correlation_id';
        IF jsonb_typeof(m -> 'correlation_id') <> 'string' OR length(cid) > 255 OR cid ~ '[[:cntrl:]]' THEN
            RAISE EXCEPTION 'queueNotification: meta.correlation_id must be a string of at most 255 characters without control characters'
                USING ERRCODE = '22023', HINT = 'Use your own request or order id (a UUID fits); leave it out to get a generated one.';
        END IF;
    END IF;
    IF m ? 'campaign_id' AND jsonb_typeof(m -> 'campaign_id') <> 'null' THEN
        camp := m ->> 'campaign_id';
        IF jsonb_typeof(m -> 'campaign_id') <> 'string' OR length(camp) > 255 OR camp ~ '[[:cntrl:]]' THEN
            RAISE EXCEPTION 'queueNotification: meta.campaign_id must be a string of at most 255 characters without control characters'
                USING ERRCODE = '22023', HINT = 'A short name or id of the campaign, e.g. 2026-03-spring-sale.';
        END IF;
    END IF;
    IF ntype ~ '[[:cntrl:]]' OR coalesce(m ->> 'dedupe_key', '') ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'queueNotification: meta.type and meta.dedupe_key must not hold control characters'
            USING ERRCODE = '22023', HINT = 'Use one line of printable text, e.g. order-42:paid.';
    END IF;
    IF m ? 'delay_seconds' AND m ? 'send_at' THEN
        RAISE EXCEPTION 'queueNotification: give meta.delay_seconds or meta.send_at, not both' USING ERRCODE = '22023', HINT = 'delay_seconds counts from now; send_at names the time.';
    ELSIF m ? 'delay_seconds' THEN
        IF jsonb_typeof(m -> 'delay_seconds') <> 'number' OR (m ->> 'delay_seconds')::numeric NOT BETWEEN 0 AND 2592000 THEN
            RAISE EXCEPTION 'queueNotification: meta.delay_seconds must be a number of seconds from 0 to 2592000 (30 days)'
                USING ERRCODE = '22023', HINT = 'For later than 30 days, enqueue it later.';
        END IF;
        due := now() + make_interval(secs => (m ->> 'delay_seconds')::double precision);
    ELSIF m ? 'send_at' THEN
        IF jsonb_typeof(m -> 'send_at') <> 'string' OR length(m ->> 'send_at') > 64 THEN
            RAISE EXCEPTION 'queueNotification: meta.send_at must be a timestamp string'
                USING ERRCODE = '22023', HINT = 'Use ISO 8601 with a zone, e.g. 2026-01-31T08:00:00+02:00.';
        END IF;
        BEGIN
            due := (m ->> 'send_at')::timestamptz;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'queueNotification: meta.send_at % is not a timestamp', quote_literal(m ->> 'send_at')
                USING ERRCODE = '22023', HINT = 'Use ISO 8601 with a zone, e.g. 2026-01-31T08:00:00+02:00.';
        END;
        -- The same window as delay_seconds (plus a day of clock skew behind): infinity, -infinity
        -- and epoch name no time to send.
        IF NOT isfinite(due) OR due < now() - interval '1 day' OR due > now() + interval '30 days' THEN
            RAISE EXCEPTION 'queueNotification: meta.send_at % is outside the window of 1 day ago to 30 days ahead', quote_literal(m ->> 'send_at')
                USING ERRCODE = '22023',
                      HINT = 'Give a time within the next 30 days (ISO 8601 with a zone), or meta.delay_seconds from 0 to 2592000.';
        END IF;
    END IF;
    IF m ? 'priority' THEN
        IF jsonb_typeof(m -> 'priority') <> 'number' OR (m ->> 'priority') !~ '^-?[0-9]+$'
           OR (m ->> 'priority')::numeric NOT BETWEEN -100 AND 100 THEN
            RAISE EXCEPTION 'queueNotification: meta.priority must be a whole number from -100 to 100' USING ERRCODE = '22023', HINT = '0 is normal; higher goes first.';
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
            coalesce(nullif(cid, ''), gen_random_uuid()::text),
            nullif(camp, ''), dkey)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
