-- 0008: counters and histograms kept in the same transaction as each outcome, so no stop, resume,
-- retry, sweep or clean-up can lower them, and every process that reads them reads the same values.
--
-- The audit trigger classifies each state change once; the counters and the enqueue-to-accepted
-- histogram are updated from that classification in the same statement as the audit rows. What
-- notify_apply_statuses counts (delivered, read, late_failed) is not counted again here.
-- Worker starts, contact opt-outs and send-run durations are counted as their events are recorded.
-- Meta's answer time is observed by the drain's write-back statement (engine/store.py).

-- The bucket bounds of each histogram (inclusive upper bounds, as Prometheus' `le`). An observation
-- above the last bound lands in the 'Infinity' bucket. Bounds are data: the exporter reads them here.
CREATE TABLE notify_histogram_bounds (
    name   text     PRIMARY KEY,
    unit   text     NOT NULL,
    bounds float8[] NOT NULL CONSTRAINT notify_histogram_bounds_not_empty CHECK (cardinality(bounds) > 0)
);

INSERT INTO notify_histogram_bounds (name, unit, bounds) VALUES
    -- From queueNotification to Meta's acceptance: seconds for an immediate send, hours for a
    -- scheduled or deferred one.
    ('enqueue_to_accepted', 'seconds',
     '{0.5,1,2.5,5,10,30,60,120,300,600,1800,3600,7200,21600,43200,86400}'),
    -- One send's HTTP round trip to Meta (SendResult.latency_s).
    ('meta_answer', 'seconds', '{0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30}'),
    -- One send run (NOTIFY_WORKER_DONE.duration_ms): the runbook's histogram is in milliseconds.
    ('worker_run', 'milliseconds',
     '{100,250,500,1000,2500,5000,10000,20000,30000,45000,55000,60000,90000,120000,300000,600000}');

-- One row per histogram, label set and bucket: the observations that fell in that bucket (not
-- cumulative) and their sum; the exporter adds them up into Prometheus' cumulative form.
CREATE TABLE notify_histograms (
    name       text        NOT NULL REFERENCES notify_histogram_bounds (name),
    labels     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    bucket_le  float8      NOT NULL,
    count      bigint      NOT NULL DEFAULT 0 CONSTRAINT notify_histograms_not_negative CHECK (count >= 0),
    sum        float8      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, labels, bucket_le)
);

-- A handful of rows updated by every write-back: vacuum them often, keep updates HOT.
ALTER TABLE notify_counters SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,
                                 autovacuum_vacuum_threshold = 1000);
ALTER TABLE notify_histograms SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,
                                   autovacuum_vacuum_threshold = 1000);

-- The bucket of an observation: the first bound at or above it, else 'Infinity'.
CREATE FUNCTION notify_bucket(p_name text, p_value float8) RETURNS float8
LANGUAGE sql STABLE AS $$
    SELECT coalesce(min(le), 'Infinity'::float8)
      FROM notify_histogram_bounds b, unnest(b.bounds) AS le
     WHERE b.name = p_name AND le >= p_value
$$;

-- Which counter one audited change adds to, if any: (name, labels), with the outcome classes of
-- reporting/figures.py: the contact's no (our opt-outs, Meta's 131050) is filtered, not failed; an
-- emergency stop holds; an expiry is its own outcome. `stage` tells a send the worker
-- refused (send) from a waiting row cancelled (queue).
CREATE FUNCTION notify_outcome_counter(p_event text, p_domain text, p_code text, p_previous_code text)
RETURNS TABLE (name text, labels jsonb)
LANGUAGE sql STABLE AS $$
    SELECT c.name, c.labels FROM (SELECT
        CASE
            WHEN p_event = 'sent' THEN 'sent'
            WHEN p_event IN ('failed', 'cancelled') THEN CASE
                WHEN p_code IN ('opted_out', 'marketing_opted_out', '131050') THEN 'filtered'
                WHEN p_code = 'emergency_stop' THEN 'held'
                WHEN p_code = 'expired' THEN 'expired'
                WHEN p_event = 'failed' THEN 'failed'
                ELSE 'cancelled' END
            WHEN p_event IN ('deferred', 'retried', 'requeued', 'swept') THEN p_event
        END AS name,
        CASE
            WHEN p_event = 'sent' THEN jsonb_build_object('domain', p_domain)
            WHEN p_event IN ('failed', 'cancelled') THEN CASE
                WHEN p_code IN ('opted_out', 'marketing_opted_out', '131050') THEN jsonb_build_object(
                    'domain', p_domain, 'reason', p_code,
                    'stage', CASE WHEN p_event = 'failed' THEN 'send' ELSE 'queue' END)
                WHEN p_code IN ('emergency_stop', 'expired') THEN jsonb_build_object('domain', p_domain)
                WHEN p_event = 'failed' THEN jsonb_build_object('domain', p_domain,
                                                                'error_code', coalesce(p_code, 'none'))
                ELSE jsonb_build_object('domain', p_domain, 'reason', coalesce(p_code, 'none')) END
            WHEN p_event = 'deferred' THEN jsonb_build_object('reason', coalesce(p_code, 'none'))
            WHEN p_event = 'retried' THEN jsonb_build_object('error_code', coalesce(p_code, 'none'))
            WHEN p_event = 'requeued' THEN jsonb_build_object('reason', coalesce(p_previous_code, 'none'))
            ELSE '{}'::jsonb
        END AS labels) c
     WHERE c.name IS NOT NULL
$$;

-- The audit trigger of 0006, unchanged in what it records, now also counting each outcome. The
-- classification is computed once (the `changed` CTE) and feeds the audit rows, the counters and
-- the enqueue-to-accepted histogram, all in one statement. Rows go to the counters in key order,
-- so concurrent write-backs lock the same counter rows in the same order (no deadlock).
CREATE OR REPLACE FUNCTION notifications_audit_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.id, n.domain, n.last_error_code AS code, o.last_error_code AS previous_code,
               CASE WHEN change.event_type = 'sent'
                    THEN greatest(0, extract(epoch FROM coalesce(n.sent_at, now()) - n.created_at))::float8
               END AS accepted_s,
               change.event_type,
               jsonb_strip_nulls(jsonb_build_object(
                   'actor', notify_current_actor(),
                   'from_status', o.status,
                   'to_status', n.status,
                   'retry_count', n.retry_count,
                   'next_attempt_at', CASE WHEN n.status = 'queued' THEN n.next_attempt_at END,
                   'worker', coalesce(n.locked_by, o.locked_by),
                   'error_code', n.last_error_code,
                   'error_message', n.error_message,
                   'wa_message_id', n.wa_message_id,
                   -- An accepted message whose row was stopped or cancelled meanwhile: say so.
                   'sent_after', CASE WHEN n.status = 'sent' AND o.status = 'failed'
                                      THEN coalesce(o.last_error_code, o.error_message) END,
                   'delivery_status', CASE WHEN n.delivery_status IS DISTINCT FROM o.delivery_status
                                           THEN n.delivery_status END)) AS details
          FROM updated n
          JOIN previous o ON o.id = n.id
         CROSS JOIN LATERAL (SELECT CASE
            WHEN n.status <> o.status THEN CASE
                WHEN n.status = 'sent' AND o.status = 'failed' AND o.delivery_status = 'failed' THEN 'read'
                WHEN n.status = 'sent' THEN 'sent'
                -- Meta reported a failure after accepting the message (a status webhook).
                WHEN n.status = 'failed' AND o.status = 'sent' THEN 'failed_late'
                -- A worker's verdict comes while it holds the row; anything else stopped a waiting row.
                -- (a worker's verdict also gives the lock back; a stop or opt-out of a held row does not).
                WHEN n.status = 'failed' AND o.locked_at IS NOT NULL AND n.locked_at IS NULL THEN 'failed'
                WHEN n.status = 'failed' THEN 'cancelled'
                ELSE 'requeued' END
            -- A receipt: delivered, read or played (status stays 'sent').
            WHEN n.delivery_status IS DISTINCT FROM o.delivery_status AND n.delivery_status <> 'sent'
                 THEN n.delivery_status
            WHEN n.status <> 'queued' THEN NULL
            -- A live drain extending the lease of rows it still holds: not a new claim.
            WHEN n.locked_at IS NOT NULL AND o.locked_at IS NOT NULL
                 AND n.locked_by IS NOT DISTINCT FROM o.locked_by THEN NULL
            WHEN n.locked_at IS NOT NULL AND n.locked_at IS DISTINCT FROM o.locked_at THEN 'claimed'
            WHEN n.locked_at IS NULL AND o.locked_at IS NOT NULL THEN CASE
                WHEN n.retry_count > o.retry_count THEN 'retried'
                WHEN n.next_attempt_at IS DISTINCT FROM o.next_attempt_at THEN 'deferred'
                ELSE 'swept' END
            WHEN n.retry_count < o.retry_count THEN 'retries_reset'
            WHEN n.next_attempt_at IS DISTINCT FROM o.next_attempt_at THEN 'rescheduled'
            END AS event_type) change
         WHERE change.event_type IS NOT NULL
    ), counted AS (
        INSERT INTO notify_counters AS c (name, labels, value)
        SELECT k.name, k.labels, count(*)
          FROM changed ch
         CROSS JOIN LATERAL notify_outcome_counter(ch.event_type, ch.domain, ch.code, ch.previous_code) k
         GROUP BY k.name, k.labels
         ORDER BY k.name, k.labels
        ON CONFLICT (name, labels) DO UPDATE SET value = c.value + EXCLUDED.value, updated_at = now()
    ), observed AS (
        INSERT INTO notify_histograms AS h (name, labels, bucket_le, count, sum)
        SELECT 'enqueue_to_accepted', jsonb_build_object('domain', ch.domain),
               notify_bucket('enqueue_to_accepted', ch.accepted_s), count(*), sum(ch.accepted_s)
          FROM changed ch
         WHERE ch.accepted_s IS NOT NULL
         GROUP BY 1, 2, 3
         ORDER BY 1, 2, 3
        ON CONFLICT (name, labels, bucket_le)
        DO UPDATE SET count = h.count + EXCLUDED.count, sum = h.sum + EXCLUDED.sum, updated_at = now()
    )
    INSERT INTO notification_audit_log (notification_id, event_type, details)
    SELECT id, event_type, details FROM changed;
    RETURN NULL;
END
$$;

-- Events that are counted as they are recorded: send-run starts (not a long run's heartbeats, which
-- are NOTIFY_WORKER_START events of phase 'heartbeat'), contacts
-- opting out (the opt-out alert) and send-run durations (the runbook's latency histogram), so a
-- clean-up of old events cannot lower them.
CREATE FUNCTION notify_count_events() RETURNS trigger
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
                                        ELSE jsonb_build_object('reason', coalesce(e.details->>'reason', 'unknown'))
                                    END AS labels) k
         WHERE (e.event_type = 'NOTIFY_WORKER_START' AND e.details->>'phase' IS DISTINCT FROM 'heartbeat')
            OR e.event_type = 'CONTACT_OPTED_OUT'
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

CREATE TRIGGER observability_events_count AFTER INSERT ON observability_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION notify_count_events();

-- Start the counters from what the database already holds, so an upgraded deployment keeps its
-- history: rows by their current outcome, the audit trail's deferrals, retries and re-queues, and
-- the events still kept. (What a clean-up already deleted cannot be counted back.)
INSERT INTO notify_counters AS c (name, labels, value)
SELECT k.name, k.labels, count(*)
  FROM notifications n
 CROSS JOIN LATERAL notify_outcome_counter(
        CASE WHEN n.status = 'sent' OR n.failed_late_at IS NOT NULL THEN 'sent' ELSE 'failed' END,
        n.domain, n.last_error_code, NULL) k
 WHERE n.status = 'sent' OR n.status = 'failed'
 GROUP BY 1, 2
ON CONFLICT (name, labels) DO UPDATE SET value = c.value + EXCLUDED.value, updated_at = now();

INSERT INTO notify_counters AS c (name, labels, value)
SELECT k.name, k.labels, count(*)
  FROM notification_audit_log a
 CROSS JOIN LATERAL notify_outcome_counter(a.event_type, NULL, a.details->>'error_code', NULL) k
 WHERE a.event_type IN ('deferred', 'retried', 'requeued', 'swept')
 GROUP BY 1, 2
ON CONFLICT (name, labels) DO UPDATE SET value = c.value + EXCLUDED.value, updated_at = now();

INSERT INTO notify_counters AS c (name, labels, value)
SELECT CASE e.event_type WHEN 'NOTIFY_WORKER_START' THEN 'worker_starts' ELSE 'contacts_opted_out' END,
       CASE e.event_type WHEN 'NOTIFY_WORKER_START'
            THEN jsonb_build_object('trigger', coalesce(e.details->>'trigger', 'unknown'))
            ELSE jsonb_build_object('reason', coalesce(e.details->>'reason', 'unknown')) END,
       count(*)
  FROM observability_events e
 WHERE (e.event_type = 'NOTIFY_WORKER_START' AND e.details->>'phase' IS DISTINCT FROM 'heartbeat')
    OR e.event_type = 'CONTACT_OPTED_OUT'
 GROUP BY 1, 2
ON CONFLICT (name, labels) DO UPDATE SET value = c.value + EXCLUDED.value, updated_at = now();

INSERT INTO notify_histograms (name, labels, bucket_le, count, sum)
SELECT 'worker_run', jsonb_build_object('trigger', coalesce(e.details->>'trigger', 'unknown')),
       notify_bucket('worker_run', (e.details->>'duration_ms')::float8), count(*),
       sum((e.details->>'duration_ms')::float8)
  FROM observability_events e
 WHERE e.event_type = 'NOTIFY_WORKER_DONE' AND jsonb_typeof(e.details->'duration_ms') = 'number'
 GROUP BY 1, 2, 3;

INSERT INTO notify_histograms (name, labels, bucket_le, count, sum)
SELECT 'enqueue_to_accepted', jsonb_build_object('domain', n.domain), notify_bucket('enqueue_to_accepted', s),
       count(*), sum(s)
  FROM notifications n
 CROSS JOIN LATERAL (SELECT greatest(0, extract(epoch FROM n.sent_at - n.created_at))::float8 AS s) x
 WHERE n.sent_at IS NOT NULL
 GROUP BY 1, 2, 3;
