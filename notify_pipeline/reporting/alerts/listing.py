"""What fires and what fired: the `alerts` table read for people (`notify-pipeline alerts`,
`notify-pipeline status`) and scripts (`--json`). Read-only; both queries use the table's indexes
(the partial unique index of firing rows, alerts_started_at_idx)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from notify_pipeline.reporting.alerts.verdict import duration

COLUMNS = "id, alert_name, state, summary, details, started_at, resolved_at, last_notified_at, notifications"
RECENT_LIMIT = 200


@dataclass(frozen=True)
class Episode:
    id: int
    alert: str  # alert name; run failures are run_failure:<job>
    state: str  # firing | resolved
    headline: str
    started_at: datetime
    resolved_at: datetime | None
    last_notified_at: datetime | None
    notifications: int  # announcements that reached the chat channel (or were recorded only)
    first_check: str
    delivery_failures: int
    pagerduty: str | None  # triggered | trigger_failed | resolved; None: not paged

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Episode:
        details = row["details"] or {}
        return cls(
            row["id"],
            row["alert_name"],
            row["state"],
            row["summary"],
            row["started_at"],
            row["resolved_at"],
            row["last_notified_at"],
            row["notifications"],
            details.get("first_check", ""),
            details.get("delivery_failures", 0),
            (details.get("pagerduty") or {}).get("state"),
        )

    def lasted_s(self, now: datetime) -> float:
        return ((self.resolved_at or now) - self.started_at).total_seconds()

    def as_json(self, now: datetime) -> dict[str, Any]:
        def iso(at: datetime | None) -> str | None:
            return at.astimezone(UTC).isoformat() if at else None

        return {
            "id": self.id,
            "alert": self.alert,
            "state": self.state,
            "headline": self.headline,
            "started_at": iso(self.started_at),
            "resolved_at": iso(self.resolved_at),
            "duration_s": round(self.lasted_s(now)),
            "last_notified_at": iso(self.last_notified_at),
            "notifications": self.notifications,
            "delivery_failures": self.delivery_failures,
            "pagerduty": self.pagerduty,
            "first_check": self.first_check,
        }


def open_episode(conn: psycopg.Connection, alert_name: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE alert_name = %s AND state = 'firing'", (alert_name,)
        ).fetchone()


def firing_alerts(conn: psycopg.Connection) -> list[Episode]:
    """Every alert firing now (alert sensors and run failures alike), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY started_at, id"
        ).fetchall()
    return [Episode.from_row(row) for row in rows]


def recent_episodes(conn: psycopg.Connection, since_s: float, limit: int = RECENT_LIMIT) -> list[Episode]:
    """Episodes that started, or were still open, in the last `since_s` seconds; newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE started_at > now() - make_interval(secs => %(since)s) "
            "OR resolved_at > now() - make_interval(secs => %(since)s) OR state = 'firing' "
            "ORDER BY started_at DESC, id DESC LIMIT %(limit)s",
            {"since": since_s, "limit": limit},
        ).fetchall()
    return [Episode.from_row(row) for row in rows]


def _stamp(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "-"


def render_firing(firing: list[Episode], now: datetime) -> str:
    """A few lines for `notify-pipeline status`: what fires, since when, the first thing to check."""
    if not firing:
        return "Alerts: none firing"
    lines = [f"Alerts: {len(firing)} firing"]
    for episode in firing:
        lines.append(
            f"  {episode.alert} since {_stamp(episode.started_at)} ({duration(episode.lasted_s(now))}): "
            f"{episode.headline}"
        )
    return "\n".join(lines)


def render(firing: list[Episode], recent: list[Episode], since_s: float, now: datetime) -> str:
    lines = [render_firing(firing, now)]
    for episode in firing:
        if episode.first_check:
            lines.append(f"  {episode.alert}: first check: {episode.first_check}")
    lines += ["", f"Episodes in the last {duration(since_s)}: {len(recent)}"]
    if recent:
        header = ("alert", "state", "started", "resolved", "lasted", "sent", "pagerduty", "headline")
        rows = [
            (
                e.alert,
                e.state,
                _stamp(e.started_at),
                _stamp(e.resolved_at),
                duration(e.lasted_s(now)),
                str(e.notifications) + (f" ({e.delivery_failures} failed)" if e.delivery_failures else ""),
                e.pagerduty or "-",
                e.headline,
            )
            for e in recent
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            lines.append(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                + "  "
                + row[-1]
            )
    return "\n".join(lines)
