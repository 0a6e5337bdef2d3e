"""The engine's queue reads and writes: read what decisions need, write results back in one statement
(the SQL itself, claim included, is named in queries.sql).

Claims commit before any HTTP call (a transaction is never held open across a send), and results
are written conditionally: a failure or deferral only lands while this worker still holds the row,
while a `sent` lands whenever the row is still queued, so an accepted message is always recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import psycopg

from notify_pipeline.engine import queries

# The statements, with why each reads as it does, are in queries.sql.
WRITE_RESULTS = queries.write_results
RELEASE = queries.release_claims
STILL_SENDABLE = queries.still_sendable


@dataclass(frozen=True)
class Outcome:
    """What happens to one claimed row: kind is sent, retried, deferred or failed (the status is
    queued for a retry or a deferral)."""

    kind: str
    id: int
    status: str
    retry_count: int
    deferral_count: int
    next_attempt_at: datetime | None = None
    error_message: str | None = None
    error_code: str | None = None
    wa_message_id: str | None = None
    # 132015/132016: Meta says the template is paused or disabled; mark it held in whatsapp_templates.
    template_hold: bool = False
    # Seconds Meta took to answer the send (SendResult.latency_s); None when nothing was sent.
    latency_s: float | None = None


@dataclass(frozen=True)
class Contact:
    opted_out: bool
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    timezone: str
    marketing_opted_out: bool = False  # Meta's user preference: no MARKETING templates
    last_inbound_at: datetime | None = None  # the contact's last message to us (24-hour window)


@asynccontextmanager
async def single_statement(conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
    """Make one statement atomic and committed. On an autocommit connection (the engine's) it
    already is, and an explicit BEGIN and COMMIT would add two round trips to every claim and
    every write-back: under load each costs a full turn of a busy event loop."""
    if conn.autocommit:
        yield
    else:
        async with conn.transaction():
            yield


# Longest error text kept on a row: Meta's are a few hundred characters; anything longer is an
# echoed body from a proxy, which would only bloat the row and the audit log.
MAX_ERROR_CHARS = 2_000


def storable_text(value: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """Text from an answer (Meta's, a proxy's) as PostgreSQL can store it: no NUL, no lone
    surrogate, bounded. Left as it was, one such answer would fail the whole batch's write, and
    the journal would replay that failure into every later drain."""
    if value is None:
        return None
    value = value[:limit].replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8")


async def write_outcomes(conn: psycopg.AsyncConnection, outcomes: Sequence[Outcome], *, worker: str) -> int:
    if not outcomes:
        return 0
    params = {
        "worker": worker,
        "ids": [o.id for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "retries": [o.retry_count for o in outcomes],
        "deferrals": [o.deferral_count for o in outcomes],
        "due": [o.next_attempt_at for o in outcomes],
        "messages": [storable_text(o.error_message) for o in outcomes],
        "codes": [storable_text(o.error_code, 64) for o in outcomes],
        "wamids": [storable_text(o.wa_message_id, 256) for o in outcomes],
        "latencies": [o.latency_s for o in outcomes],
    }
    async with single_statement(conn):
        cur = await conn.execute(WRITE_RESULTS, params)
        return cur.rowcount


async def release(conn: psycopg.AsyncConnection, ids: Sequence[int], *, worker: str) -> int:
    """Give rows back untouched (no attempt used): a stop, an auth failure, the end of a run, a row
    taken away while held."""
    if not ids:
        return 0
    async with single_statement(conn):
        cur = await conn.execute(RELEASE, {"ids": list(ids), "worker": worker})
        return cur.rowcount


async def still_sendable(conn: psycopg.AsyncConnection, ids: Sequence[int], *, worker: str) -> set[int]:
    cur = await conn.execute(STILL_SENDABLE, {"ids": list(ids), "worker": worker})
    return {row[0] for row in await cur.fetchall()}


async def hold_templates(conn: psycopg.AsyncConnection, keys: Sequence[tuple[str, str]]) -> None:
    """Meta answered 132015/132016 for these (name, language): mark them paused until a sync or a
    template webhook says otherwise, so their rows are held rather than failed."""
    for name, language in set(keys):
        await conn.execute(queries.pause_template, (name, language))


async def contacts(conn: psycopg.AsyncConnection, wa_ids: Sequence[str]) -> dict[str, Contact]:
    cur = await conn.execute(queries.contact_preferences, (list(set(wa_ids)),))
    return {wa_id: Contact(*rest) for wa_id, *rest in await cur.fetchall()}


async def recent_sends(
    conn: psycopg.AsyncConnection, wa_ids: Sequence[str], window_s: float
) -> dict[str, int]:
    """Messages sent to each recipient in the last `window_s` seconds (seeds the pair limiter)."""
    cur = await conn.execute(queries.recent_sends_by_recipient, (list(set(wa_ids)), window_s))
    return dict(await cur.fetchall())


@dataclass(frozen=True)
class SenderStop:
    """Why a sender may not send now: the operator's pause (paused) or a hold on the sender."""

    paused: bool
    text: str  # one line for the report: `paused: <reason>` or `held (<kind>): <reason>`


async def stop_reason(conn: psycopg.AsyncConnection, sender: str) -> SenderStop | None:
    """Why this sender may not send now (the operator's pause or a sender hold), or None."""
    cur = await conn.execute(queries.sender_stop_reason, (sender,))
    row = await cur.fetchone()
    if row is None:
        return None
    paused, reason, hold_kind, hold_reason = row
    if paused:
        return SenderStop(True, f"paused: {reason}")
    return SenderStop(False, f"held ({hold_kind}): {hold_reason}") if hold_kind else None


async def next_due_in(conn: psycopg.AsyncConnection) -> float | None:
    """Seconds until the earliest deferred queued row comes due, or None when none waits."""
    cur = await conn.execute(queries.next_due_in)
    return (await cur.fetchone())[0]


async def record_event(conn: psycopg.AsyncConnection, event_type: str, details: dict[str, Any]) -> None:
    from psycopg.types.json import Jsonb

    async with single_statement(conn):
        await conn.execute(queries.record_event, (event_type, Jsonb(details)))
