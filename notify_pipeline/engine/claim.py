"""The claim: take a batch of due rows for one worker, most urgent first (CTE + FOR UPDATE SKIP LOCKED,
then UPDATE FROM it, which never takes more than `limit` rows). It commits before any HTTP call."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from notify_pipeline.engine.store import single_statement

# Order: priority (higher first), then due time, then id. It is the order of notifications_claim_idx
# (0005), so the claim reads the first entries of the highest band with due rows, whatever the
# backlog below it. Rows deferred to later in a higher band lie in front of those: PostgreSQL 18
# skips them (skip scan), 15-17 read their index entries without the heap (about 4 ms a claim per
# 100k such rows; see python -m notify_pipeline.bench.claim_order).
# A stale claim goes to another worker only: a live worker that finds its own rows stale is still
# sending them (a slow batch), and taking them again would send them twice.
CLAIM = """
WITH due AS (
    SELECT id FROM notifications
     WHERE status = 'queued'
       AND next_attempt_at <= now()
       AND (locked_at IS NULL
            OR (locked_at < now() - make_interval(secs => %(lease_s)s)
                AND locked_by IS DISTINCT FROM %(worker)s))
     ORDER BY priority DESC, next_attempt_at, id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
   SET locked_at = now(), locked_by = %(worker)s
  FROM due
 WHERE n.id = due.id
RETURNING n.id, n.to_wa_id, n.template_name, n.language, n.domain, n.notification_type, n.payload,
          n.priority, n.retry_count, n.deferral_count, n.deferrals, n.quiet_hours_override, n.expires_at, n.created_at
"""


async def claim(
    conn: psycopg.AsyncConnection, *, worker: str, limit: int, lease_s: float
) -> list[dict[str, Any]]:
    async with single_statement(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(CLAIM, {"worker": worker, "limit": limit, "lease_s": lease_s})
        return await cur.fetchall()
