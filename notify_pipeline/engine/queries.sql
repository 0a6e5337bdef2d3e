-- Every statement the delivery engine runs, by name. What runs today is here; the tables, functions
-- and triggers they use are in notify_pipeline/db/schema.sql.
--
-- Format (read once at import by queries.py): `-- name: <snake_case>` starts a statement, which runs
-- to the next `-- name:` line. Whole-line `--` comments are left out of the statement text, so they
-- may say anything (a `%` in one is harmless). Placeholders are psycopg's: `%(name)s` for a mapping
-- of parameters, `%s` for a sequence. Code reads a statement as `queries.<name>`.
--
-- Not here, because Python assembles them: operations.retry_failed builds its WHERE clause from the
-- operator's filters, and sender_lock.listen builds LISTEN from the channel constants it also
-- compares notifications against. notify_pipeline_tests/engine/test_queries.py prepares every
-- statement below on a migrated database and checks that no other SQL is left in the engine's code.


-- ==================================================================================================
-- Claiming (claim.py) and enqueueing (enqueue.py)
-- ==================================================================================================

-- name: claim_batch
-- Take a batch of due rows for one worker, most urgent first; it commits before any HTTP call.
-- Order: priority (higher first), then due time, then id: the order of notifications_claim_idx
-- (0005). The claim walks the priority bands that have queued rows, highest first, one index probe
-- each (`bands`, computed only as far as the claim reads), and in each band reads the due rows from
-- the band's start. So rows deferred to later in a higher band are never read, whatever their
-- number (a single ORDER BY over the index walks their entries on PostgreSQL 15-17; see
-- python -m notify_pipeline.bench.claim_order), and a big backlog below costs nothing.
-- A stale claim goes to another worker only: a live worker that finds its own rows stale is still
-- sending them (a slow batch), and taking them again would send them twice.
-- The jsonb columns come back as text, for row_json.py to decode row by row; payload_too_deep flags
-- a payload nested deeper than row_json.MAX_DEPTH (32) levels, so the jsonpath's 33 is MAX_DEPTH + 1
-- (test_queries.py keeps the two equal).
WITH RECURSIVE bands(priority) AS (
    SELECT max(priority) FROM notifications WHERE status = 'queued'
    UNION ALL
    SELECT (SELECT max(priority) FROM notifications WHERE status = 'queued' AND priority < b.priority)
      FROM bands b
     WHERE b.priority IS NOT NULL
),
due AS (
    SELECT d.id
      FROM bands b
     CROSS JOIN LATERAL (
        SELECT id FROM notifications
         WHERE status = 'queued'
           AND priority = b.priority
           AND next_attempt_at <= now()
           AND (locked_at IS NULL
                OR (locked_at < now() - make_interval(secs => %(lease_s)s)
                    AND locked_by IS DISTINCT FROM %(worker)s))
         ORDER BY next_attempt_at, id
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED
     ) d
     LIMIT %(limit)s
),
claimed AS (
    UPDATE notifications n
       SET locked_at = now(), locked_by = %(worker)s
      FROM due
     WHERE n.id = due.id
    RETURNING n.id, n.to_wa_id, n.template_name, n.language, n.domain, n.notification_type,
              n.payload::text AS payload,
              jsonb_path_exists(n.payload, 'strict $.**{33}') AS payload_too_deep,
              n.priority, n.next_attempt_at, n.retry_count, n.deferral_count, n.deferrals::text AS deferrals,
              n.quiet_hours_override, n.expires_at, n.created_at
)
SELECT * FROM claimed ORDER BY priority DESC, next_attempt_at, id

-- name: queue_notification
-- Enqueueing from Python goes through the same SQL function applications call.
SELECT queueNotification(%s, %s)


-- ==================================================================================================
-- What the send decisions read (store.py, row_json.py)
-- ==================================================================================================

-- name: template_registry
-- The template registry as the send policy reads it; the jsonb columns come back as text, for
-- row_json.py to decode one template at a time.
SELECT template_name, language, category, approval_status, is_active, parameter_format,
       variables::text AS variables, components::text AS components, retry_policy::text AS retry_policy,
       quiet_hours_exempt
  FROM whatsapp_templates

-- name: contact_preferences
SELECT wa_id, opted_out, quiet_hours_start, quiet_hours_end, timezone, marketing_opted_out,
last_inbound_at FROM contact_preferences WHERE wa_id = ANY(%s)

-- name: recent_sends_by_recipient
-- Messages sent to each recipient in the last N seconds (seeds the pair limiter).
SELECT to_wa_id, count(*) FROM notifications WHERE to_wa_id = ANY(%s) AND status = 'sent'
AND sent_at > now() - make_interval(secs => %s) GROUP BY to_wa_id

-- name: still_sendable
-- Which of the rows a drain holds may still be sent: still queued under its claim, the contact not
-- opted out, the template (if any) still approved and switched on.
SELECT n.id FROM notifications n
  LEFT JOIN contact_preferences c ON c.wa_id = n.to_wa_id
  LEFT JOIN whatsapp_templates t
         ON t.template_name = n.template_name AND t.language = coalesce(n.language, 'en')
 WHERE n.id = ANY(%(ids)s) AND n.status = 'queued' AND n.locked_by = %(worker)s
   AND n.locked_at IS NOT NULL AND NOT coalesce(c.opted_out, false)
   AND (n.template_name IS NULL OR (t.is_active AND t.approval_status = 'APPROVED'))

-- name: sender_stop_reason
-- The operator's pause and the sender's hold, in one round trip.
SELECT q.paused, q.reason, h.kind, h.reason FROM queue_control q
LEFT JOIN sender_holds h ON h.sender = %s

-- name: next_due_in
-- Seconds until the earliest deferred queued row comes due (NULL when none waits).
SELECT extract(epoch FROM min(next_attempt_at) - now())::float FROM notifications
WHERE status = 'queued' AND next_attempt_at > now()


-- ==================================================================================================
-- Writing results (store.py)
-- ==================================================================================================

-- name: write_results
-- Results are written conditionally: a failure or deferral only lands while this worker still
-- holds the row, while a `sent` lands whenever the row is still queued, so an accepted message is
-- always recorded. Meta's answer time of each send (Outcome.latency_s) goes to its histogram in the
-- same statement (a data-modifying CTE): the observations land exactly when the results do. A
-- request that never left (`connection`) had no answer to time.
WITH answered AS (
    INSERT INTO notify_histograms AS h (name, labels, bucket_le, count, sum)
    SELECT 'meta_answer',
           jsonb_build_object('answer', CASE WHEN a.status = 'sent' THEN 'accepted' ELSE 'error' END),
           notify_bucket('meta_answer', a.latency_s), count(*), sum(a.latency_s)
      FROM unnest(%(statuses)s::text[], %(codes)s::text[], %(latencies)s::float8[])
           AS a(status, error_code, latency_s)
     WHERE a.latency_s IS NOT NULL AND a.error_code IS DISTINCT FROM 'connection'
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    ON CONFLICT (name, labels, bucket_le)
    DO UPDATE SET count = h.count + EXCLUDED.count, sum = h.sum + EXCLUDED.sum, updated_at = now()
)
UPDATE notifications n
   SET status = r.status,
       retry_count = r.retry_count,
       deferral_count = r.deferral_count,
       next_attempt_at = CASE WHEN r.status = 'queued' THEN r.next_attempt_at END,
       error_message = r.error_message,
       last_error_code = r.error_code,
       wa_message_id = coalesce(r.wa_message_id, n.wa_message_id),
       sent_at = CASE WHEN r.status = 'sent' THEN now() ELSE n.sent_at END,
       locked_at = NULL
  FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(retries)s::int[], %(deferrals)s::int[],
              %(due)s::timestamptz[], %(messages)s::text[], %(codes)s::text[], %(wamids)s::text[])
       AS r(id, status, retry_count, deferral_count, next_attempt_at, error_message, error_code, wa_message_id)
 WHERE n.id = r.id
   AND CASE WHEN r.status = 'sent' THEN n.status <> 'sent'
            ELSE n.status = 'queued' AND n.locked_by = %(worker)s END

-- name: release_claims
-- Give rows back, whatever their status: a queued row becomes claimable again (no attempt used);
-- a row someone stopped or cancelled while we held it loses our lock, so that resuming it later
-- (the runbook's resume SQL does not touch locked_at) does not leave it locked by a live drain.
UPDATE notifications SET locked_at = NULL
 WHERE id = ANY(%(ids)s) AND locked_by = %(worker)s AND locked_at IS NOT NULL

-- name: pause_template
-- Meta answered 132015/132016 for this (name, language): held until a sync or a template webhook
-- says otherwise, so its rows are held rather than failed.
UPDATE whatsapp_templates SET approval_status = 'PAUSED' WHERE template_name = %s
AND language = %s AND approval_status = 'APPROVED'

-- name: record_event
-- One row of the observability log: the drain's events, holds and every operator operation.
INSERT INTO observability_events (event_type, details) VALUES (%s, %s)


-- ==================================================================================================
-- Workers and leases (workers.py) and the sensor's questions (due.py)
-- ==================================================================================================

-- name: register_worker
INSERT INTO send_workers (worker_id, sender, run_id, host, pid, backend_pid, trigger,
lifetime_ends_at) VALUES (%s, %s, %s, %s, %s, pg_backend_pid(), %s,
now() + make_interval(secs => %s))
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), ended_at = NULL

-- name: worker_heartbeat
UPDATE send_workers SET heartbeat_at = now() WHERE worker_id = %s

-- name: extend_leases
-- Extend the lease of the rows the drain still holds (and only those) once a third of the lease
-- has passed (the caller passes lease_s / 3), so a slow API never lets a live drain's claim expire.
UPDATE notifications SET locked_at = now() WHERE id = ANY(%s) AND status = 'queued'
AND locked_by = %s AND locked_at < now() - make_interval(secs => %s)

-- name: finish_worker
UPDATE send_workers SET ended_at = now(), heartbeat_at = now(), stopped_by = %s, report = %s
WHERE worker_id = %s

-- name: claim_holders
-- Every other drain holding claimed rows, with what tells whether it is dead: ended, or silent
-- (its heartbeat, or without a registry row its newest claim, older than %(silent)s seconds).
SELECT n.locked_by, w.host, w.pid, w.ended_at IS NOT NULL,
       coalesce(w.heartbeat_at, max(n.locked_at)) < now() - make_interval(secs => %(silent)s)
  FROM notifications n
  LEFT JOIN send_workers w ON w.worker_id = n.locked_by
 WHERE n.status = 'queued' AND n.locked_at IS NOT NULL AND n.locked_by IS DISTINCT FROM %(me)s
 GROUP BY n.locked_by, w.host, w.pid, w.ended_at, w.heartbeat_at

-- name: release_dead_claims
UPDATE notifications SET locked_at = NULL WHERE status = 'queued' AND locked_at IS NOT NULL
AND locked_by = ANY(%s)

-- name: drains_of_runs
-- The drain registry rows of these runs, aged by the database's clock; a drain holds an advisory
-- lock (its sender's) while its backend lives.
SELECT run_id, extract(epoch FROM now() - heartbeat_at)::float,
extract(epoch FROM lifetime_ends_at - now())::float, ended_at IS NOT NULL,
EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = w.backend_pid AND l.locktype = 'advisory'
AND l.granted) FROM send_workers w WHERE run_id = ANY(%s)

-- name: stale_claim_exists
-- Is some queued row claimed longer ago than the lease (its drain died holding it)?
SELECT 1 FROM notifications WHERE status = 'queued'
AND locked_at < now() - make_interval(secs => %s) LIMIT 1


-- ==================================================================================================
-- The sender lock (sender_lock.py)
-- ==================================================================================================

-- name: sender_lock_held
-- Does some drain hold this sender's lock right now? (The sensor's liveness test.) pg_locks shows
-- the bigint key as classid (high 32 bits) and objid (low 32 bits), passed as two parameters.
SELECT EXISTS (
    SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND classid = %s::bigint::oid AND objid = %s::bigint::oid)

-- name: try_sender_lock
SELECT pg_try_advisory_lock(%s)

-- name: set_lock_timeout
-- A successor waits for the lock in slices, each under its own lock_timeout.
SELECT set_config('lock_timeout', %s, false)

-- name: wait_sender_lock
SELECT pg_advisory_lock(%s)

-- name: clear_lock_timeout
SELECT set_config('lock_timeout', '0', false)


-- ==================================================================================================
-- Sender holds (holds.py)
-- ==================================================================================================

-- name: set_hold
INSERT INTO sender_holds (sender, kind, code, reason, set_by) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (sender) DO UPDATE SET kind = EXCLUDED.kind, code = EXCLUDED.code, reason = EXCLUDED.reason,
                                   since = now(), set_by = EXCLUDED.set_by

-- name: active_hold
SELECT sender, kind, code, reason, since FROM sender_holds WHERE sender = %s

-- name: lift_hold
DELETE FROM sender_holds WHERE sender = %s RETURNING sender, kind, code, reason, since


-- ==================================================================================================
-- Operator operations (operations.py); retry_failed builds its own SQL from the filters
-- ==================================================================================================

-- name: sweep_stale_locks
-- Release claims older than a given interval (a dead worker's rows). The rows keep their own
-- next_attempt_at, so they are due at once if that has passed, not a lease later.
UPDATE notifications SET locked_at = NULL WHERE status = 'queued' AND locked_at < now() - %s

-- name: set_paused
-- The database kill switch: every worker and the sensor stop while it is set.
UPDATE queue_control SET paused = %s, reason = %s, changed_at = now(), changed_by = %s

-- name: paused
SELECT paused, reason FROM queue_control

-- name: emergency_stop_rows
-- Mark every waiting row failed with a code of its own, so resume finds exactly these rows. Rows
-- a worker is sending right now are left to finish; the pause stops that worker within a batch.
UPDATE notifications SET status = 'failed', last_error_code = %s, error_message = %s
WHERE status = 'queued' AND locked_at IS NULL

-- name: resume_stopped_rows
-- Queue again every row the emergency stop held, whatever its age; each keeps its retry count and
-- its own due time.
UPDATE notifications SET status = 'queued', last_error_code = NULL, error_message = NULL
WHERE status = 'failed' AND last_error_code = %s

-- name: stopped_rows_exist
SELECT EXISTS (SELECT 1 FROM notifications WHERE status = 'failed' AND last_error_code = %s)


-- ==================================================================================================
-- Template definitions (templates_store.py)
-- ==================================================================================================

-- name: upsert_template
-- Insert or update by (name, language); keeps our own key, domain and settings. A template a sync
-- switched off because Meta no longer listed it (inactive_reason 'not_at_meta') is switched on
-- again when Meta lists it APPROVED; one an operator switched off (no reason recorded) stays off.
INSERT INTO whatsapp_templates (template_key, template_name, language, category, domain, approval_status,
                                parameter_format, variables, components, meta_template_id, synced_at)
VALUES (%(key)s, %(name)s, %(language)s, %(category)s, %(domain)s, %(status)s, %(format)s, %(variables)s,
        %(components)s, %(meta_id)s, now())
ON CONFLICT (template_name, language) DO UPDATE
   SET category = EXCLUDED.category, approval_status = EXCLUDED.approval_status,
       parameter_format = EXCLUDED.parameter_format, variables = EXCLUDED.variables,
       components = EXCLUDED.components, meta_template_id = EXCLUDED.meta_template_id, synced_at = now(),
       is_active = whatsapp_templates.is_active OR (EXCLUDED.approval_status = 'APPROVED'
                                                    AND whatsapp_templates.inactive_reason IS NOT DISTINCT FROM 'not_at_meta'),
       inactive_reason = CASE WHEN EXCLUDED.approval_status = 'APPROVED' THEN NULL
                              ELSE whatsapp_templates.inactive_reason END
