"""Sender holds: Meta refused the sender's credentials (auth) or account (368, 131031, ...).

While a hold exists no drain sends for that sender and the sensor launches no send run; the queue
is kept intact. It is apart from the operator's pause (queue_control), so resuming an emergency stop
does not lift a credentials hold, nor the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.engine import queries


@dataclass(frozen=True)
class Hold:
    sender: str
    kind: str  # auth | account
    code: str | None
    reason: str
    since: datetime


# The events a hold records (alerts read them): one per refusal that stopped a drain.
HOLD_EVENTS = {"auth": "NOTIFY_AUTH_FAILURE", "account": "NOTIFY_ACCOUNT_FAILURE"}

SET_HOLD = queries.set_hold


async def set_hold_async(
    conn: psycopg.AsyncConnection, sender: str, kind: str, code: str | None, reason: str, worker: str
) -> None:
    """Hold the sender (a drain that Meta refused calls this) and record the refusal."""
    actor = f"send:{worker}"
    await conn.execute(SET_HOLD, (sender, kind, code, reason, actor))
    await conn.execute(
        queries.record_event,
        (
            HOLD_EVENTS[kind],
            Jsonb({"sender": sender, "kind": kind, "error": reason, "code": code, "worker": worker}),
        ),
    )


def active_hold(conn: psycopg.Connection, sender: str) -> Hold | None:
    row = conn.execute(queries.active_hold, (sender,)).fetchone()
    return Hold(*row) if row else None


def lift_hold(conn: psycopg.Connection, sender: str, reason: str, actor: str) -> Hold | None:
    """Lift the sender's hold; returns what was lifted (None: there was none)."""
    with conn.transaction():
        row = conn.execute(queries.lift_hold, (sender,)).fetchone()
        if row:
            conn.execute(
                queries.record_event,
                (
                    "NOTIFY_SENDER_RELEASED",
                    Jsonb({"sender": sender, "kind": row[1], "reason": reason, "actor": actor}),
                ),
            )
    return Hold(*row) if row else None
