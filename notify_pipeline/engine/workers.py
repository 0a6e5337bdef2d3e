"""The drain registry (send_workers): start, heartbeat with lease extension, end; and the rescue
of claimed rows whose drain is dead.

A drain holding the sender lock is the only live drain of that sender, so any other drain's claimed
rows belong to a dead drain, or to one still writing its last results after a database fault. Rows
are taken back when their drain ended, when it ran on this host and its process is gone, or when
its heartbeat is older than `silent_after_s` (longer than a drain keeps retrying its writes).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.engine import queries

HOST = socket.gethostname()


async def register(
    conn: psycopg.AsyncConnection,
    *,
    worker: str,
    sender: str,
    run_id: str | None,
    trigger: str,
    lifetime_s: float,
) -> None:
    await conn.execute(
        queries.register_worker,
        (worker, sender, run_id, HOST, os.getpid(), trigger, lifetime_s),
    )


async def heartbeat(
    conn: psycopg.AsyncConnection, worker: str, holding: Sequence[int], lease_s: float
) -> None:
    """Say the drain is alive, and extend the lease of the rows it still holds (and only those)
    once a third of the lease has passed, so a slow API never lets a live drain's claim expire."""
    await conn.execute(queries.worker_heartbeat, (worker,))
    if holding:
        await conn.execute(queries.extend_leases, (list(holding), worker, lease_s / 3))


async def finish(conn: psycopg.AsyncConnection, worker: str, stopped_by: str, report: dict[str, Any]) -> None:
    await conn.execute(queries.finish_worker, (stopped_by, Jsonb(report), worker))


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


CLAIM_HOLDERS = queries.claim_holders


async def rescue(conn: psycopg.AsyncConnection, *, me: str, silent_after_s: float) -> int:
    """Give back the claimed rows of dead drains; returns how many rows became due again."""
    cur = await conn.execute(CLAIM_HOLDERS, {"me": me, "silent": silent_after_s})
    dead = [
        holder
        for holder, host, pid, ended, silent in await cur.fetchall()
        if ended or silent or (host == HOST and pid is not None and _process_gone(pid))
    ]
    if not dead:
        return 0
    cur = await conn.execute(queries.release_dead_claims, (dead,))
    return cur.rowcount
