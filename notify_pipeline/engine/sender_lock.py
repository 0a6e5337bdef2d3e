"""One drain per sender: a PostgreSQL advisory lock held on the drain's own control connection.

The control connection also LISTENs for wake-ups (notify_queue) and for what a drain must re-check
at once (notify_control). Losing it, by a restart or pg_terminate_backend, releases the lock, so
the drain must stop sending the moment it notices: the next notifies() or query raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import psycopg

QUEUE_CHANNEL = "notify_queue"
CONTROL_CHANNEL = "notify_control"


def lock_key(sender: str) -> int:
    """A stable signed 64-bit advisory lock key for a sender (the same in every process)."""
    digest = hashlib.sha256(f"notify-pipeline/sender/{sender}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_parts(sender: str) -> tuple[int, int]:
    # pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits).
    key = lock_key(sender) & 0xFFFFFFFFFFFFFFFF
    return key >> 32, key & 0xFFFFFFFF


LOCK_HELD = """
SELECT EXISTS (
    SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND classid = %s::bigint::oid AND objid = %s::bigint::oid)
"""


def lock_held(conn: psycopg.Connection, sender: str) -> bool:
    """Does some drain hold this sender's lock right now? (The sensor's liveness test.)"""
    return bool(conn.execute(LOCK_HELD, _lock_parts(sender)).fetchone()[0])


class SenderControl:
    """The drain's control connection: the sender lock, LISTEN, and the drain's small queries."""

    def __init__(self, conn: psycopg.AsyncConnection, sender: str) -> None:
        self.conn, self.sender = conn, sender

    async def acquire(self, wait_s: float, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Take the sender lock, trying every 100 ms for up to `wait_s` (a successor waits for its
        predecessor's release, so the handover gap is at most one try)."""
        deadline = time.monotonic() + wait_s
        while True:
            cur = await self.conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.sender),))
            if (await cur.fetchone())[0]:
                return True
            if time.monotonic() >= deadline or give_up():
                return False
            await asyncio.sleep(0.1)

    async def listen(self) -> None:
        await self.conn.execute(f"LISTEN {QUEUE_CHANNEL}")
        await self.conn.execute(f"LISTEN {CONTROL_CHANNEL}")

    async def wait(self, timeout: float, on_queue: Callable[[], None]) -> set[str]:
        """The control notifications that arrive within `timeout` seconds, as {channel:payload}.
        A queue notification calls `on_queue` at once (the claimer is waiting on it) and the wait
        goes on; a control notification ends the wait early (it needs acting on now)."""
        seen: set[str] = set()
        async for note in self.conn.notifies(timeout=timeout):
            if note.channel == QUEUE_CHANNEL:
                on_queue()
                continue
            seen.add(f"{note.channel}:{note.payload}")
            break
        return seen
