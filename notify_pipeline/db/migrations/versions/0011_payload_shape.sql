-- 0011: the shape of a template message's components is checked where every enqueue goes through
-- (queueNotification), so a row the drain could not read never enters the queue; and a delay too
-- small for the clock is refused as bad input (22023), not as an overflow (22003).
--
-- PostgreSQL's jsonb takes 10,000 levels of nesting and 5,000-digit numbers; Python's json stops
-- near 1,000 levels and 4,300 digits. Such a row was accepted, then failed every drain that claimed
-- it. Components now follow Meta's send shape: header, body and button components with their
-- parameter lists (and the carousel and limited-time-offer components of templates the engine
-- leaves Meta to judge), every string, count and number bounded, nothing deeper than 16 levels.
-- What one template needs (how many parameters, named or positional, filled-in lengths) stays the
-- send-time check's (whatsapp/templates.py), which answers with Meta's codes. Rows queued before
-- are the drain's: it fails a row it cannot read on its own, with invalid_payload.
--
-- Each *_problem function returns NULL when the value fits, else one line naming the field and
-- what to fix. Queued rows that would not pass today:
--   SELECT id, notify_components_problem(payload #> '{template,components}') FROM notifications
--    WHERE status = 'queued' AND notify_components_problem(payload #> '{template,components}') IS NOT NULL;

-- A string field: present (unless optional), a string, at most max_chars characters. Plain SQL, so
-- the planner inlines it: it runs for every parameter of every enqueue.
CREATE FUNCTION notify_string_problem(value jsonb, field text, max_chars integer, optional boolean DEFAULT false)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value IS NULL THEN CASE WHEN NOT optional THEN format('%s is missing', field) END
        WHEN jsonb_typeof(value) <> 'string' THEN format('%s must be a string, got %s', field, jsonb_typeof(value))
        WHEN length(value #>> '{}') > max_chars
            THEN format('%s is %s characters; at most %s', field, length(value #>> '{}'), max_chars)
    END
$$;

-- A number field (optional): a number from low to high, a whole one if asked. Checked on its text
-- before any cast, so a 5,000-digit number is named, not cast.
CREATE FUNCTION notify_number_problem(value jsonb, field text, low numeric, high numeric, whole boolean)
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    ELSIF jsonb_typeof(value) <> 'number' THEN
        RETURN format('%s must be a number, got %s', field, jsonb_typeof(value));
    ELSIF whole AND (value #>> '{}') !~ '^-?[0-9]+$' THEN
        RETURN format('%s must be a whole number', field);
    ELSIF length(value #>> '{}') > 40 OR (value #>> '{}')::numeric NOT BETWEEN low AND high THEN
        RETURN format('%s must be a number from %s to %s', field, low, high);
    END IF;
    RETURN NULL;
END
$$;

-- Keys of an object that are not in `allowed`, as a short list for a message (or NULL). The cheap
-- test first: listing keys costs a query, and almost every object has none to list.
CREATE FUNCTION notify_unknown_keys(value jsonb, allowed text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    extra jsonb := value - allowed;
BEGIN
    IF extra = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT string_agg(quote_literal(left(k, 40)), ', ')
              FROM (SELECT k FROM jsonb_object_keys(extra) k ORDER BY k LIMIT 5) listed);
END
$$;

-- One parameter of a component: {"type": T, T: value} (plus parameter_name for named templates).
CREATE FUNCTION notify_parameter_problem(p jsonb, field text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    text_chars  CONSTANT integer := 1024;  -- Meta's limit of a parameter's text
    media_chars CONSTANT integer := 2048;  -- a media id or link (signed URLs run long)
    biggest     CONSTANT numeric := 999999999999999;  -- 15 digits: amount_1000, epoch milliseconds
    kinds       CONSTANT text[] := ARRAY['text', 'currency', 'date_time', 'image', 'document', 'video',
                                         'location', 'payload', 'coupon_code', 'action', 'product',
                                         'limited_time_offer'];
    kind    text;
    v       jsonb;
    at      text;
    problem text;
    unknown text;
    k       text;
BEGIN
    IF jsonb_typeof(p) <> 'object' THEN
        RETURN format('%s must be an object such as {"type": "text", "text": "Ana"}, got %s', field, jsonb_typeof(p));
    END IF;
    kind := CASE WHEN jsonb_typeof(p -> 'type') = 'string' THEN lower(p ->> 'type') END;
    IF kind IS NULL OR kind <> ALL (kinds) THEN
        RETURN format('%s.type must be one of %s, got %s', field, array_to_string(kinds, ', '),
                      coalesce(quote_literal(left(p ->> 'type', 40)), 'nothing'));
    END IF;
    unknown := notify_unknown_keys(p, ARRAY['type', 'parameter_name', kind]);
    IF unknown IS NOT NULL THEN
        RETURN format('%s has unsupported field(s) for a %s parameter: %s', field, kind, unknown);
    END IF;
    IF p ? 'parameter_name' AND (jsonb_typeof(p -> 'parameter_name') <> 'string'
                                 OR (p ->> 'parameter_name') !~ '^[a-z_][a-z0-9_]{0,99}$') THEN
        RETURN format('%s.parameter_name must be the name of one of the template''s {{variables}} (lower-case letters, digits and _)', field);
    END IF;
    v := p -> kind;
    at := field || '.' || kind;
    IF kind IN ('text', 'payload', 'coupon_code') THEN
        RETURN notify_string_problem(v, at, text_chars);
    END IF;
    IF jsonb_typeof(v) IS DISTINCT FROM 'object' THEN
        RETURN format('%s must be an object, got %s', at, coalesce(jsonb_typeof(v), 'nothing'));
    END IF;
    IF kind = 'currency' THEN
        unknown := notify_unknown_keys(v, ARRAY['fallback_value', 'code', 'amount_1000']);
        problem := coalesce(notify_string_problem(v -> 'fallback_value', at || '.fallback_value', text_chars),
                            CASE WHEN v ? 'code' AND coalesce(v ->> 'code', '') !~ '^[A-Z]{3}$'
                                 THEN format('%s.code must be an ISO 4217 code such as USD or RWF', at) END,
                            notify_number_problem(v -> 'amount_1000', at || '.amount_1000', -biggest, biggest, true));
    ELSIF kind = 'date_time' THEN
        unknown := notify_unknown_keys(v, ARRAY['fallback_value', 'day_of_week', 'year', 'month', 'day_of_month',
                                                'hour', 'minute', 'calendar', 'timestamp']);
        problem := notify_string_problem(v -> 'fallback_value', at || '.fallback_value', text_chars);
        FOR k IN SELECT key FROM jsonb_object_keys(v) key WHERE key <> 'fallback_value' ORDER BY key LOOP
            EXIT WHEN problem IS NOT NULL;
            problem := CASE WHEN jsonb_typeof(v -> k) = 'string' THEN notify_string_problem(v -> k, at || '.' || k, 64)
                            ELSE notify_number_problem(v -> k, at || '.' || k, -biggest, biggest, true) END;
        END LOOP;
    ELSIF kind IN ('image', 'document', 'video') THEN
        unknown := notify_unknown_keys(v, ARRAY['id', 'link', 'caption', 'filename']);
        problem := coalesce(CASE WHEN NOT (v ? 'id' OR v ? 'link') THEN format('%s needs an id or a link', at) END,
                            notify_string_problem(v -> 'id', at || '.id', media_chars, true),
                            notify_string_problem(v -> 'link', at || '.link', media_chars, true),
                            notify_string_problem(v -> 'caption', at || '.caption', text_chars, true),
                            notify_string_problem(v -> 'filename', at || '.filename', 255, true));
    ELSIF kind = 'location' THEN
        unknown := notify_unknown_keys(v, ARRAY['latitude', 'longitude', 'name', 'address']);
        problem := coalesce(CASE WHEN NOT (v ? 'latitude' AND v ? 'longitude')
                                 THEN format('%s needs a latitude and a longitude', at) END,
                            CASE WHEN jsonb_typeof(v -> 'latitude') = 'string'
                                 THEN notify_string_problem(v -> 'latitude', at || '.latitude', 32)
                                 ELSE notify_number_problem(v -> 'latitude', at || '.latitude', -90, 90, false) END,
                            CASE WHEN jsonb_typeof(v -> 'longitude') = 'string'
                                 THEN notify_string_problem(v -> 'longitude', at || '.longitude', 32)
                                 ELSE notify_number_problem(v -> 'longitude', at || '.longitude', -180, 180, false) END,
                            notify_string_problem(v -> 'name', at || '.name', text_chars, true),
                            notify_string_problem(v -> 'address', at || '.address', text_chars, true));
    ELSIF kind = 'product' THEN
        unknown := notify_unknown_keys(v, ARRAY['product_retailer_id', 'catalog_id']);
        problem := coalesce(notify_string_problem(v -> 'product_retailer_id', at || '.product_retailer_id', text_chars),
                            notify_string_problem(v -> 'catalog_id', at || '.catalog_id', text_chars, true));
    ELSIF kind = 'limited_time_offer' THEN
        unknown := notify_unknown_keys(v, ARRAY['expiration_time_ms']);
        problem := notify_number_problem(v -> 'expiration_time_ms', at || '.expiration_time_ms', 0, biggest, true);
    ELSE  -- action: a flow's or catalog's own object; its depth is bounded above, its numbers here
        IF jsonb_path_exists(v, 'strict $.** ? (@.type() == "number" && (@ > $big || @ < -$big))',
                             jsonb_build_object('big', biggest)) THEN
            problem := format('%s holds a number of more than 15 digits', at);
        END IF;
    END IF;
    IF unknown IS NOT NULL THEN
        RETURN format('%s has unsupported field(s): %s', at, unknown);
    END IF;
    RETURN problem;
END
$$;

-- One component: header, body or button with its parameters; at the top level also a carousel
-- (cards of header, body and button components) or a limited-time offer.
CREATE FUNCTION notify_component_problem(c jsonb, field text, top boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    most_cards      CONSTANT integer := 10;   -- Meta's carousel limit
    most_parameters CONSTANT integer := 250;  -- a 1,024-character body holds at most 204 {{n}}
    kinds   text[] := ARRAY['header', 'body', 'button'];
    kind    text;
    problem text;
    unknown text;
    card    jsonb;
    i       integer;
BEGIN
    IF top THEN
        kinds := kinds || ARRAY['carousel', 'limited_time_offer'];
    END IF;
    IF jsonb_typeof(c) <> 'object' THEN
        RETURN format('%s must be an object such as {"type": "body", "parameters": [...]}, got %s', field, jsonb_typeof(c));
    END IF;
    kind := CASE WHEN jsonb_typeof(c -> 'type') = 'string' THEN lower(c ->> 'type') END;
    IF kind IS NULL OR kind <> ALL (kinds) THEN
        RETURN format('%s.type must be one of %s, got %s', field, array_to_string(kinds, ', '),
                      coalesce(quote_literal(left(c ->> 'type', 40)), 'nothing'));
    END IF;
    unknown := notify_unknown_keys(c, CASE kind WHEN 'button' THEN ARRAY['type', 'sub_type', 'index', 'parameters']
                                                WHEN 'carousel' THEN ARRAY['type', 'cards']
                                                ELSE ARRAY['type', 'parameters'] END);
    IF unknown IS NOT NULL THEN
        RETURN format('%s has unsupported field(s) for a %s component: %s', field, kind, unknown);
    END IF;
    IF kind = 'button' THEN
        IF jsonb_typeof(c -> 'sub_type') IS DISTINCT FROM 'string' OR (c ->> 'sub_type') !~ '^[a-z_]{1,32}$' THEN
            RETURN format('%s.sub_type must name the button''s kind, such as url, quick_reply or copy_code', field);
        END IF;
        IF jsonb_typeof(c -> 'index') IS DISTINCT FROM 'string' OR (c ->> 'index') !~ '^[0-9]$' THEN
            RETURN format('%s.index must be the button''s position as a string from "0" to "9"', field);
        END IF;
    END IF;
    IF kind = 'carousel' THEN
        IF jsonb_typeof(c -> 'cards') IS DISTINCT FROM 'array' THEN
            RETURN format('%s.cards must be an array of cards {"card_index": 0, "components": [...]}', field);
        ELSIF jsonb_array_length(c -> 'cards') > most_cards THEN
            RETURN format('%s.cards has %s cards; at most %s', field, jsonb_array_length(c -> 'cards'), most_cards);
        END IF;
        FOR i IN 0 .. jsonb_array_length(c -> 'cards') - 1 LOOP
            card := c -> 'cards' -> i;
            IF jsonb_typeof(card) <> 'object' THEN
                RETURN format('%s.cards[%s] must be an object {"card_index": %s, "components": [...]}', field, i, i);
            END IF;
            unknown := notify_unknown_keys(card, ARRAY['card_index', 'components']);
            problem := coalesce(
                CASE WHEN unknown IS NOT NULL THEN format('%s.cards[%s] has unsupported field(s): %s', field, i, unknown) END,
                CASE WHEN NOT card ? 'card_index' THEN format('%s.cards[%s].card_index is missing', field, i) END,
                notify_number_problem(card -> 'card_index', format('%s.cards[%s].card_index', field, i), 0, most_cards - 1, true),
                notify_component_list_problem(card -> 'components', format('%s.cards[%s].components', field, i), false));
            IF problem IS NOT NULL THEN
                RETURN problem;
            END IF;
        END LOOP;
        RETURN NULL;
    END IF;
    IF NOT c ? 'parameters' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(c -> 'parameters') <> 'array' THEN
        RETURN format('%s.parameters must be an array, got %s', field, jsonb_typeof(c -> 'parameters'));
    ELSIF jsonb_array_length(c -> 'parameters') > most_parameters THEN
        RETURN format('%s.parameters has %s parameters; at most %s', field, jsonb_array_length(c -> 'parameters'), most_parameters);
    END IF;
    FOR i IN 0 .. jsonb_array_length(c -> 'parameters') - 1 LOOP
        problem := notify_parameter_problem(c -> 'parameters' -> i, format('%s.parameters[%s]', field, i));
        IF problem IS NOT NULL THEN
            RETURN problem;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- A list of components (the template's, or a carousel card's).
CREATE FUNCTION notify_component_list_problem(list jsonb, field text, top boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    most_components CONSTANT integer := 16;  -- header, body, 10 buttons, a carousel, an offer: 14
    problem text;
    i       integer;
BEGIN
    IF jsonb_typeof(list) IS DISTINCT FROM 'array' THEN
        RETURN format('%s must be an array of header, body and button components, got %s', field,
                      coalesce(jsonb_typeof(list), 'nothing'));
    ELSIF jsonb_array_length(list) > most_components THEN
        RETURN format('%s has %s components; at most %s', field, jsonb_array_length(list), most_components);
    END IF;
    FOR i IN 0 .. jsonb_array_length(list) - 1 LOOP
        problem := notify_component_problem(list -> i, format('%s[%s]', field, i), top);
        IF problem IS NOT NULL THEN
            RETURN problem;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- A template message's components (NULL or JSON null: none, as a template without variables).
CREATE FUNCTION notify_components_problem(components jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    deepest CONSTANT integer := 16;  -- a carousel card's media link sits at level 9; Python's json stops near 1,000
BEGIN
    IF components IS NULL OR jsonb_typeof(components) = 'null' THEN
        RETURN NULL;
    END IF;
    -- First, and without walking further down than the limit: the shape checks below then never
    -- meet a deep value.
    IF jsonb_path_exists(components, format('strict $.**{%s}', deepest + 1)::jsonpath) THEN
        RETURN format('template.components nests deeper than %s levels', deepest);
    END IF;
    RETURN notify_component_list_problem(components, 'template.components', true);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- queueNotification as in 0010, plus: template.components checked by notify_components_problem,
-- and meta.delay_seconds of less than a microsecond (but more than 0) refused.
-- ---------------------------------------------------------------------------------------------
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
    problem   text;
    delay_s   numeric;
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
        problem := notify_components_problem(message -> 'template' -> 'components');
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'queueNotification: %', problem
                USING ERRCODE = '22023',
                      HINT = 'Components are Meta''s send shape, e.g. [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}, {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "SKB-1"}]}].';
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
        delay_s := (m ->> 'delay_seconds')::numeric;
        -- Timestamps count microseconds: a smaller delay means nothing, and one below 1e-308 (1e-400
        -- is a valid JSON number) would not even fit the double precision make_interval takes.
        IF delay_s > 0 AND delay_s < 0.000001 THEN
            RAISE EXCEPTION 'queueNotification: meta.delay_seconds % is less than a microsecond, the clock''s resolution',
                CASE WHEN length(m ->> 'delay_seconds') > 40 THEN format('(%s characters)', length(m ->> 'delay_seconds'))
                     ELSE m ->> 'delay_seconds' END
                USING ERRCODE = '22023', HINT = 'Give 0 to send now, or a delay of at least 0.000001 seconds.';
        END IF;
        due := now() + make_interval(secs => delay_s::double precision);
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
