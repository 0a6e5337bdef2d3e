"""The load and the queue it goes through: the producer of a phase, and what the queue says of it
(the drain serving now, the drains of a span, the rows still queued)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from notify_pipeline.db.connect import connect as product_connect
from notify_pipeline.demo import load_template_catalog
from notify_pipeline.engine.templates_store import upsert_templates
from notify_pipeline.whatsapp.messages import template_message

ACTOR = "bench:dagster-latency"
WATCH_ACTOR = "bench:dagster-latency-watch"


def connect(url: str, actor: str):
    return product_connect(url, actor=actor, autocommit=True)


def serving_worker(conn) -> dict[str, Any] | None:
    """The drain that is sending now: registered, not ended, heartbeat fresh, newest first."""
    row = conn.execute(
        "SELECT worker_id, run_id, host, pid, extract(epoch FROM started_at)::float8, "
        "extract(epoch FROM lifetime_ends_at - started_at)::float8 "
        "FROM send_workers WHERE ended_at IS NULL AND heartbeat_at > now() - interval '15 seconds' "
        "ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    keys = ("worker_id", "run_id", "host", "pid", "started_at", "lifetime_s")
    return dict(zip(keys, row, strict=True))


def drains_between(conn, start: float, end: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT worker_id, run_id, pid, extract(epoch FROM started_at)::float8, "
        "extract(epoch FROM ended_at)::float8, stopped_by, "
        "extract(epoch FROM lifetime_ends_at - started_at)::float8 "
        "FROM send_workers WHERE started_at <= to_timestamp(%s) "
        "AND coalesce(ended_at, heartbeat_at) >= to_timestamp(%s) ORDER BY started_at",
        (end, start),
    ).fetchall()
    keys = ("worker_id", "run_id", "pid", "started_at", "ended_at", "stopped_by", "lifetime_s")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def wait_settled(conn, ids: list[int], timeout_s: float) -> float:
    """Wait until none of `ids` is still queued (or the timeout); the seconds waited."""
    started = time.time()
    while time.time() - started < timeout_s:
        left = conn.execute(
            "SELECT count(*) FROM notifications WHERE id = ANY(%s) AND status = 'queued'", (ids,)
        ).fetchone()[0]
        if left == 0:
            break
        time.sleep(2)
    return time.time() - started


def load_templates(url: str) -> None:
    """The demo catalog's templates (what `dev --no-seed` leaves out)."""
    with connect(url, ACTOR) as conn:
        upsert_templates(conn, load_template_catalog())


def message_for(n: int, recipient: str) -> dict[str, Any]:
    full = template_message(recipient, "welcome_message", "en", body=[f"Bench {n}"])
    return {"to": full["to"], "template": full["template"]}


@dataclass
class Phase:
    name: str
    rate_per_s: float
    seconds: float
    recipient_base: int


class Producer(threading.Thread):
    """Enqueues at a fixed schedule (start + i / rate); records (id, commit time)."""

    def __init__(self, url: str, phase: Phase, stop: threading.Event) -> None:
        super().__init__(name=f"producer-{phase.name}", daemon=True)
        self.url, self.phase, self.stop_event = url, phase, stop
        self.rows: list[tuple[int, float]] = []
        self.errors: list[str] = []
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        meta = Jsonb({"quiet_hours_override": True, "domain": "bench", "correlation_id": "dagster-latency"})
        count = max(1, round(self.phase.rate_per_s * self.phase.seconds))
        with connect(self.url, ACTOR) as conn:
            self.started_at = time.time()
            for n in range(count):
                if self.stop_event.is_set():
                    break
                due = self.started_at + n / self.phase.rate_per_s
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                recipient = f"+2507{self.phase.recipient_base + n:08d}"
                try:
                    row = conn.execute(
                        "SELECT queueNotification(%s, %s)", (Jsonb(message_for(n, recipient)), meta)
                    ).fetchone()
                except Exception as exc:  # keep measuring; the count of errors is reported
                    self.errors.append(str(exc).splitlines()[0])
                    continue
                self.rows.append((int(row[0]), time.time()))  # autocommit: committed on return
        self.ended_at = time.time()

    def enqueue_rate(self) -> float | None:
        """Enqueues per second over the phase (n - 1 intervals), None for fewer than two."""
        if len(self.rows) < 2:
            return None
        return round((len(self.rows) - 1) / (self.ended_at - self.started_at), 2)
