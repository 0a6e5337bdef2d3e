"""The claim: take a batch of due rows for one worker, most urgent first (CTE + FOR UPDATE SKIP LOCKED,
then UPDATE FROM it, which never takes more than `limit` rows). It commits before any HTTP call.

Its jsonb columns come back as text and are decoded row by row (row_json.py): a row Python cannot
read is returned marked unreadable, for the drain to fail on its own, and never fails the batch."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from notify_pipeline.engine.row_json import MAX_DEPTH, read_rows
from notify_pipeline.engine.store import single_statement

# Order: priority (higher first), then due time, then id: the order of notifications_claim_idx
# (0005). The claim walks the priority bands that have queued rows, highest first, one index probe
# each (`bands`, computed only as far as the claim reads), and in each band reads the due rows from
# the band's start. So rows deferred to later in a higher band are never read, whatever their
# number (a single ORDER BY over the index walks their entries on PostgreSQL 15-17; see
# python -m notify_pipeline.bench.claim_order), and a big backlog below costs nothing.
# A stale claim goes to another worker only: a live worker that finds its own rows stale is still
# sending them (a slow batch), and taking them again would send them twice.
CLAIM = f"""
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
              jsonb_path_exists(n.payload, 'strict $.**{{{MAX_DEPTH + 1}}}') AS payload_too_deep,
              n.priority, n.next_attempt_at, n.retry_count, n.deferral_count, n.deferrals::text AS deferrals,
              n.quiet_hours_override, n.expires_at, n.created_at
)
SELECT * FROM claimed ORDER BY priority DESC, next_attempt_at, id
"""

# The claim's jsonb columns and the JSON type each holds.
CLAIMED_JSON = {"payload": dict, "deferrals": dict}


async def claim(
    conn: psycopg.AsyncConnection, *, worker: str, limit: int, lease_s: float
) -> list[dict[str, Any]]:
    async with single_statement(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(CLAIM, {"worker": worker, "limit": limit, "lease_s": lease_s})
        return read_rows(await cur.fetchall(), CLAIMED_JSON)
