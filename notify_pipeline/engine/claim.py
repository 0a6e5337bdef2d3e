"""The claim: take a batch of due rows for one worker, most urgent first (CTE + FOR UPDATE SKIP LOCKED,
then UPDATE FROM it, which never takes more than `limit` rows). It commits before any HTTP call.

Its jsonb columns come back as text and are decoded row by row (row_json.py): a row Python cannot
read is returned marked unreadable, for the drain to fail on its own, and never fails the batch."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from notify_pipeline.engine import queries
from notify_pipeline.engine.row_json import read_rows
from notify_pipeline.engine.store import single_statement

# The statement and why it reads the queue as it does: queries.sql, claim_batch.
CLAIM = queries.claim_batch

# The claim's jsonb columns and the JSON type each holds.
CLAIMED_JSON = {"payload": dict, "deferrals": dict}


async def claim(
    conn: psycopg.AsyncConnection, *, worker: str, limit: int, lease_s: float
) -> list[dict[str, Any]]:
    async with single_statement(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(CLAIM, {"worker": worker, "limit": limit, "lease_s": lease_s})
        return read_rows(await cur.fetchall(), CLAIMED_JSON)
