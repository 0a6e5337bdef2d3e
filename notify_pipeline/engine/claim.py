"""The claim: take a batch of due rows for one worker (CTE + FOR UPDATE SKIP LOCKED, then UPDATE
FROM it, which never takes more than `limit` rows). It commits before any HTTP call."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from notify_pipeline.engine.store import single_statement

CLAIM = """
WITH due AS (
    SELECT id FROM notifications
     WHERE status = 'queued'
       AND next_attempt_at <= now()
       AND (locked_at IS NULL OR locked_at < now() - make_interval(secs => %(lease_s)s))
     ORDER BY next_attempt_at, id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
   SET locked_at = now(), locked_by = %(worker)s
  FROM due
 WHERE n.id = due.id
RETURNING n.id, n.to_wa_id, n.template_name, n.language, n.domain, n.notification_type, n.payload,
          n.retry_count, n.deferral_count, n.quiet_hours_override, n.created_at
"""


async def claim(
    conn: psycopg.AsyncConnection, *, worker: str, limit: int, lease_s: float
) -> list[dict[str, Any]]:
    async with single_statement(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(CLAIM, {"worker": worker, "limit": limit, "lease_s": lease_s})
        return await cur.fetchall()
