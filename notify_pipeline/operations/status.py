"""The runbook's system status check as data: worker activity, queue shape, outcomes by domain.

Every figure comes from reporting/figures.py, the one definition `diagnose`, the alerts, the
metrics and the daily summary use too. The queue separates what is due from what waits (deferred
or scheduled) and from what a live drain is sending: the prior system's gauge counted deferred rows
and raised "queue backed up" every night during quiet hours. The failure rate is failed / (sent +
failed) over the rows created in the last hour: rows still queued, opt-outs, emergency-stop holds
and expired rows are shown but not judged (the runbook's own query divides by every row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from notify_pipeline.engine.holds import Hold, active_hold
from notify_pipeline.redact import mask_text
from notify_pipeline.reporting import figures
from notify_pipeline.reporting.alerts.listing import Episode, firing_alerts, render_firing
from notify_pipeline.settings import sender_key

# The window of the outcome figures: the runbook's last hour.
WINDOW_S = 3600.0


@dataclass(frozen=True)
class QueueStatus:
    paused: bool
    pause_reason: str | None
    worker_events: list[tuple[str, str | None, Any, datetime]]
    depth: list[tuple[str, int, datetime | None]]  # rows by status (the runbook's depth query)
    queue: figures.QueueShape
    outcomes: figures.OutcomeFigures
    hold: Hold | None = None
    # The latest drains: worker, run, heartbeat age (s), lifetime left (s), stopped_by (None: live).
    drains: list[tuple[str, str | None, float, float | None, str | None]] = field(default_factory=list)
    alerts: list[Episode] = field(default_factory=list)  # firing now, oldest first

    @property
    def due_now(self) -> int:
        return self.queue.due

    @property
    def waiting(self) -> int:
        return self.queue.waiting

    @property
    def in_flight(self) -> int:
        return self.queue.claimed

    @property
    def failure_rate(self) -> list[tuple[str, int, int, float | None]]:
        """(domain, sent, failed, failure rate in %) for the domains with rows in the window, worst first."""
        rows = [
            (domain, o.sent, o.failed, None if o.failure_rate is None else round(100 * o.failure_rate, 2))
            for domain, o in self.outcomes.by_domain.items()
        ]
        return sorted(rows, key=lambda r: (-(r[3] if r[3] is not None else -1), r[0]))

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable (`status --json`): numbers as numbers, times as ISO 8601, free text masked."""
        hold = self.hold
        return {
            "sending": {
                "paused": self.paused,
                "pause_reason": mask_text(self.pause_reason),
                "hold": None
                if hold is None
                else {
                    "kind": hold.kind,
                    "code": hold.code,
                    "reason": mask_text(hold.reason),
                    "since": _iso(hold.since),
                },
            },
            "drains": [
                {"worker": w, "run": r, "heartbeat_s_ago": hb, "lifetime_left_s": left, "stopped_by": stop}
                for w, r, hb, left, stop in self.drains
            ],
            "worker_events": [
                {"event": e, "trigger": t, "processed": p, "at": _iso(at)}
                for e, t, p, at in self.worker_events
            ],
            "rows_by_status": {
                status: {"count": n, "oldest": _iso(oldest)} for status, n, oldest in self.depth
            },
            "alerts_firing": [episode.as_json(datetime.now(UTC)) for episode in self.alerts],
            "queue": self.queue.as_dict(),
            "outcomes": self.outcomes.as_dict(),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def queue_status(conn: psycopg.Connection) -> QueueStatus:
    paused, reason = conn.execute("SELECT paused, reason FROM queue_control").fetchone()
    events = conn.execute(
        "SELECT event_type, details->>'trigger', details->>'processed', created_at FROM observability_events "
        "WHERE event_type IN ('NOTIFY_WORKER_START', 'NOTIFY_WORKER_DONE') AND created_at > now() - interval '5 minutes' "
        "ORDER BY created_at DESC LIMIT 10"
    ).fetchall()
    depth = conn.execute(
        "SELECT status, count(*), min(created_at) FROM notifications GROUP BY status ORDER BY status"
    ).fetchall()
    drains = conn.execute(
        "SELECT worker_id, run_id, round(extract(epoch FROM now() - heartbeat_at))::float, "
        "round(extract(epoch FROM lifetime_ends_at - now()))::float, stopped_by FROM send_workers "
        "WHERE sender = %s ORDER BY started_at DESC LIMIT 3",
        (sender_key(),),
    ).fetchall()
    hold = active_hold(conn, sender_key())
    return QueueStatus(
        paused,
        reason,
        events,
        depth,
        figures.queue_shape(conn),
        figures.outcomes_since(conn, WINDOW_S),
        hold,
        drains,
        firing_alerts(conn),
    )


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render(status: QueueStatus) -> str:
    """A readable report for `notify-pipeline status`."""
    queue, outcomes = status.queue, status.outcomes
    oldest = "-" if queue.oldest_due_s is None else f"{queue.oldest_due_s:.0f} s"
    switch = f"PAUSED ({status.pause_reason})" if status.paused else "running"
    parts = [f"Sending: {switch}", render_firing(status.alerts, datetime.now(UTC))]
    if status.hold is not None:
        hold = status.hold
        parts.append(
            f"Sender HELD since {hold.since:%Y-%m-%d %H:%M} UTC: Meta refused the {hold.kind} ({hold.code}): "
            f"{hold.reason}. Fix it, then `notify-pipeline resume --hold --reason ...`"
        )
    parts += [
        "",
        "Send runs (newest first)",
        _table(
            ["worker", "run", "heartbeat_s_ago", "lifetime_left_s", "stopped_by"],
            [[w, (r or "")[:8], hb, left, stop or "(serving)"] for w, r, hb, left, stop in status.drains],
        )
        if status.drains
        else "  none yet",
        "",
        "Worker activity (last 5 minutes)",
        _table(["event", "trigger", "processed", "at"], [list(e) for e in status.worker_events])
        if status.worker_events
        else "  none: is the sensor running, or the worker paused?",
        "",
        "Queue depth",
        _table(["status", "count", "oldest"], [list(d) for d in status.depth]) if status.depth else "  empty",
        f"queued: {queue.due} due now, {queue.waiting} waiting (deferred or scheduled), "
        f"{queue.claimed} being sent; oldest due for {oldest}"
        + (
            f"; claims past the lease (counted as due or waiting): {queue.stale_claims}, see `notify-pipeline sweep`"
            if queue.stale_claims
            else ""
        ),
        "",
        "Outcomes by domain (rows created in the last hour)",
        _table(
            ["domain", "sent", "failed", "failure_%", "filtered", "held", "expired", "queued"],
            [[*rate, *_others(outcomes.by_domain[rate[0]])] for rate in status.failure_rate],
        )
        if outcomes.by_domain
        else "  no notifications in the last hour",
        f"failure rate = failed / (sent + failed): {_pct(outcomes.failure_rate)} overall; opt-outs "
        "(filtered), emergency-stop holds (held), expired and queued rows are not failures",
    ]
    return "\n".join(parts)


def _others(o: figures.Outcomes) -> list[int]:
    return [o.filtered, o.held, o.expired, o.queued]


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.2f} %"
