"""What the bench sends: the demo's approved templates, each message to a recipient of its own.

Messages go in through queueNotification(), as applications enqueue them, and every recipient
gets a row in contact_preferences with quiet hours twelve hours away, so the engine's opt-out and
quiet-hours checks run for real on every row without deferring any (the bench measures sends).
Recipients never repeat within a run, so Meta's pair limit (one message per user per 6 s) never
applies and every refusal the emulator counts is a throughput refusal.
"""

from __future__ import annotations

import asyncio
import itertools
import time as clock
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.whatsapp.messages import Button, template_message
from notify_pipeline.whatsapp.templates import TemplateSpec, parse_spec

ENQUEUE_CHUNK = 2000
ENQUEUE_MANY = """
SELECT queueNotification(t.message, t.meta)
  FROM unnest(%s::jsonb[], %s::jsonb[]) WITH ORDINALITY AS t(message, meta, n)
 ORDER BY t.n
"""
ADD_CONTACTS = """
INSERT INTO contact_preferences (wa_id, timezone, quiet_hours_start, quiet_hours_end)
SELECT wa_id, 'UTC', %s, %s FROM unnest(%s::text[]) AS wa_id
ON CONFLICT (wa_id) DO NOTHING
"""


@dataclass(frozen=True)
class Notification:
    """One message for queueNotification(message, meta)."""

    to: str
    message: dict[str, Any]
    meta: dict[str, Any]


class Workload:
    """An endless supply of valid notifications over the approved templates of a catalog."""

    def __init__(self, catalog: Sequence[Mapping[str, Any]]) -> None:
        self.templates = [
            (dict(definition), parse_spec(definition))
            for definition in catalog
            if definition.get("status") == "APPROVED"
        ]
        if not self.templates:
            raise ValueError("the template catalog has no APPROVED template to send")
        self._numbers = itertools.count(1)

    def take(self, count: int) -> list[Notification]:
        return [self._next() for _ in range(count)]

    def _next(self) -> Notification:
        n = next(self._numbers)
        definition, spec = self.templates[n % len(self.templates)]
        to = f"+2507{n:08d}"
        message = template_message(
            to,
            definition["name"],
            definition["language"],
            body=_body_values(spec, n),
            buttons=[
                Button(index, "url", f"ref{n}") for index, button in spec.buttons.items() if button.params
            ],
        )
        meta = {"domain": definition.get("domain", "core"), "correlation_id": f"bench-{n}"}
        return Notification(to, {"to": to, "template": message["template"]}, meta)


def _body_values(spec: TemplateSpec, n: int) -> list[str] | dict[str, str]:
    keys = spec.body.keys if spec.body else ()
    if spec.named:
        return {key: f"{key}-{n}" for key in keys}
    return [f"v{key}-{n}" for key in keys]


def quiet_window_far_from(now: datetime) -> tuple[time, time]:
    """A two-hour UTC quiet window starting eleven hours from `now`: never quiet during a run."""
    start = (now.astimezone(UTC) + timedelta(hours=11)).replace(minute=0, second=0, microsecond=0)
    return start.time(), (start + timedelta(hours=2)).time()


def add_contacts(conn: psycopg.Connection, notifications: Sequence[Notification]) -> None:
    start, end = quiet_window_far_from(datetime.now(UTC))
    conn.execute(ADD_CONTACTS, (start, end, [item.to for item in notifications]))


def enqueue_all(conn: psycopg.Connection, notifications: Sequence[Notification]) -> list[int]:
    """Enqueue through queueNotification(), many per statement; returns the ids in order."""
    add_contacts(conn, notifications)
    ids: list[int] = []
    for at in range(0, len(notifications), ENQUEUE_CHUNK):
        chunk = notifications[at : at + ENQUEUE_CHUNK]
        rows = conn.execute(
            ENQUEUE_MANY, ([Jsonb(item.message) for item in chunk], [Jsonb(item.meta) for item in chunk])
        ).fetchall()
        ids.extend(row[0] for row in rows)
    return ids


async def produce_steady(
    conn: psycopg.AsyncConnection, notifications: Sequence[Notification], rate_per_s: float
) -> list[int]:
    """Enqueue one notification at a time at a steady rate (on a fixed schedule, so delays do not
    accumulate), each in its own transaction, as an application would; returns the ids."""
    ids: list[int] = []
    started = clock.monotonic()
    for i, item in enumerate(notifications):
        pause = started + i / rate_per_s - clock.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        cur = await conn.execute("SELECT queueNotification(%s, %s)", (Jsonb(item.message), Jsonb(item.meta)))
        row = await cur.fetchone()
        assert row is not None
        ids.append(row[0])
    return ids
