"""The life of an alert: fire once, remind on a slower cadence while it lasts, resolve when it clears.

The `alerts` table is the source of truth for what is firing: one row per episode, and its unique
index allows one open ('firing') row per alert, so a restarted sensor or a lost cursor never fires
an alert twice. The cursor only remembers when the condition was first seen, for alerts that must
last a while before they fire (queue depth); losing it delays such an alert, never repeats one.

`notifications` and `last_notified_at` count announcements that reached their channel. A failed
webhook delivery is recorded in `details` and retried on the next tick, so the alert is never lost.
PagerDuty, when configured, follows the same table on its own (pagerduty.sync after each step):
one incident per episode, triggered when it fires and resolved when it resolves, retried until
PagerDuty accepts, independently of the webhook.

`start_grace_s` makes an alert wait that long before firing even when its condition needs no
hold of its own: worker health gets a send run's normal start (a fresh deployment, a resume, the
handover between two long-lived send runs), so it never fires while a run is simply starting.
Time comes from an injectable clock: tests drive hours of alert life without sleeping.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from notify_pipeline.reporting.alerts import pagerduty
from notify_pipeline.reporting.alerts.catalog import AlertSpec
from notify_pipeline.reporting.alerts.messages import alert_message, stamp
from notify_pipeline.reporting.alerts.sink import Delivery, Sink
from notify_pipeline.reporting.alerts.verdict import Verdict, duration
from notify_pipeline.thresholds import Thresholds

Clock = Callable[[], datetime]
KEEP_DELIVERIES = 10  # delivery attempts kept in alerts.details (the newest)
MAX_GAP_S = 600.0  # a condition seen twice this far apart may have cleared in between
EPISODE = "id, summary, details, started_at, last_notified_at, notifications"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Cursor:
    """The sensor's memory: since when the condition holds, and when it was last looked at."""

    since: datetime | None = None
    seen: datetime | None = None

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        try:
            data = json.loads(text or "{}")
            return cls(*(datetime.fromisoformat(data[k]) if data.get(k) else None for k in ("since", "seen")))
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor is a lost one: the alerts table still knows what fires

    def dump(self) -> str:
        return json.dumps(
            {k: v.isoformat() if v else None for k, v in (("since", self.since), ("seen", self.seen))}
        )


@dataclass(frozen=True)
class Outcome:
    state: str  # ok | pending | fired | reminded | firing | resolved | error
    text: str  # what happened, for the sensor's tick text and log (never the webhook URL)
    cursor: str
    delivery: Delivery | None = None
    verdict: Verdict | None = None  # None: the check could not run (state unchanged)
    episode: dict[str, Any] | None = None  # the open (or just resolved) episode: id, started_at, ...
    paged: pagerduty.Synced = field(default_factory=pagerduty.Synced)


def evaluate(
    conn: psycopg.Connection,
    spec: AlertSpec,
    thresholds: Thresholds,
    sink: Sink,
    now: datetime,
    cursor: str | None,
    *,
    pager: pagerduty.PagerDuty | None = None,
    start_grace_s: float = 0.0,
) -> Outcome:
    """Read, judge and move the alert one step, then bring PagerDuty in line. A check cut off by
    the statement timeout leaves the alert as it was and says so."""
    try:
        verdict = spec.check(conn, thresholds)
    except psycopg.errors.QueryCanceled as exc:
        return Outcome(
            "error", f"could not check within the statement timeout ({exc}); state unchanged", cursor or ""
        )
    outcome = step(
        conn,
        spec,
        verdict,
        now,
        Cursor.parse(cursor),
        max(spec.hold_s(thresholds), start_grace_s),
        thresholds.alert_repeat_s,
        sink,
    )
    paged = pagerduty.sync(conn, spec.name, pager, now)
    if not paged.sent:
        return outcome
    return dataclasses.replace(outcome, text=f"{outcome.text}; {paged.describe()}", paged=paged)


def step(
    conn: psycopg.Connection,
    spec: AlertSpec,
    verdict: Verdict,
    now: datetime,
    cursor: Cursor,
    hold_s: float,
    repeat_s: float,
    sink: Sink,
) -> Outcome:
    episode = open_episode(conn, spec.name)
    if not verdict.breached:
        cleared = Cursor(None, now).dump()
        if episode is None:
            return Outcome("ok", verdict.headline, cleared, verdict=verdict)
        message = alert_message(
            "resolved",
            spec.title,
            spec.name,
            verdict,
            started_at=episode["started_at"],
            now=now,
            was=episode["summary"],
        )
        delivery = sink.deliver(message)
        _update(conn, episode, verdict, now, "resolved", delivery)
        lasted = duration((now - episode["started_at"]).total_seconds())
        return Outcome(
            "resolved",
            f"RESOLVED after {lasted}: {verdict.headline}; {delivery.describe()}",
            cleared,
            delivery,
            verdict,
            {**episode, "resolved_at": now, "notifications": episode["notifications"] + int(delivery.ok)},
        )

    # Observations far apart (the sensor was stopped) do not prove the condition lasted between them.
    continuous = cursor.since and cursor.seen and (now - cursor.seen).total_seconds() <= MAX_GAP_S
    since = cursor.since if continuous and cursor.since else now
    held = Cursor(since, now).dump()
    if episode is None:
        if (now - since).total_seconds() < hold_s:
            return Outcome(
                "pending",
                f"pending: {verdict.headline}; fires if it lasts {duration(hold_s)} "
                f"({duration((now - since).total_seconds())} so far)",
                held,
                verdict=verdict,
            )
        episode = _insert(conn, spec.name, verdict, since) or open_episode(conn, spec.name)
        assert episode is not None
    last = episode["last_notified_at"]
    if episode["notifications"] == 0:
        kind = "firing"
    elif last is None or (now - last).total_seconds() >= repeat_s:
        kind = "repeat"
    else:
        _update(conn, episode, verdict, now, None, None)
        wait = duration(repeat_s - (now - last).total_seconds())
        return Outcome(
            "firing",
            f"FIRING since {stamp(episode['started_at'])}: {verdict.headline}; next reminder in {wait}",
            held,
            verdict=verdict,
            episode=episode,
        )
    message = alert_message(kind, spec.title, spec.name, verdict, started_at=episode["started_at"], now=now)
    delivery = sink.deliver(message)
    _update(conn, episode, verdict, now, kind, delivery)
    label = (
        "FIRING"
        if kind == "firing"
        else f"STILL FIRING ({duration((now - episode['started_at']).total_seconds())})"
    )
    return Outcome(
        "fired" if kind == "firing" else "reminded",
        f"{label}: {verdict.headline}; {delivery.describe()}",
        held,
        delivery,
        verdict,
        {**episode, "notifications": episode["notifications"] + int(delivery.ok)},
    )


def open_episode(conn: psycopg.Connection, name: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The alert's open ('firing') episode, if any; `lock` holds its row until the transaction ends."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {EPISODE} FROM alerts WHERE alert_name = %s AND state = 'firing'"
            + (" FOR UPDATE" if lock else ""),
            (name,),
        ).fetchone()


def _insert(
    conn: psycopg.Connection, name: str, verdict: Verdict, started_at: datetime
) -> dict[str, Any] | None:
    # The partial unique index decides a race: whoever loses re-reads the winner's episode.
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "INSERT INTO alerts (alert_name, state, summary, details, started_at) VALUES (%s, 'firing', %s, %s, %s) "
            f"ON CONFLICT (alert_name) WHERE state = 'firing' DO NOTHING RETURNING {EPISODE}",
            (name, verdict.headline, Jsonb(_verdict_json(verdict)), started_at),
        ).fetchone()


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {"numbers": verdict.numbers, "facts": list(verdict.facts), "first_check": verdict.first_check}


def _update(
    conn: psycopg.Connection,
    episode: dict[str, Any],
    verdict: Verdict,
    now: datetime,
    kind: str | None,
    delivery: Delivery | None,
) -> None:
    details = dict(episode["details"] or {})
    resolving = kind == "resolved"
    if resolving:
        details["resolved_with"] = {"headline": verdict.headline, "numbers": verdict.numbers}
    else:
        details.update(_verdict_json(verdict))
    # A resolved episode keeps the headline of what was wrong; the all-clear is in details.
    record(
        conn,
        episode["id"],
        episode["summary"] if resolving else verdict.headline,
        details,
        now,
        kind,
        delivery,
    )


def record(
    conn: psycopg.Connection,
    episode_id: int,
    summary: str,
    details: dict[str, Any],
    now: datetime,
    kind: str | None,
    delivery: Delivery | None,
) -> bool:
    """Write one step of an episode: its summary and details (with the delivery attempt, if any,
    added to them), one more announcement if the delivery reached its channel, and the end of the
    episode when `kind` is 'resolved'. Whether the delivery reached its channel."""
    if delivery is not None:
        entry = {"at": now.isoformat(), "kind": kind, **delivery.as_json()}
        details["deliveries"] = [*details.get("deliveries", []), entry][-KEEP_DELIVERIES:]
        if not delivery.ok:
            details["delivery_failures"] = details.get("delivery_failures", 0) + 1
    delivered = delivery is not None and delivery.ok
    resolving = kind == "resolved"
    conn.execute(
        "UPDATE alerts SET summary = %(summary)s, details = %(details)s, "
        "notifications = notifications + %(count)s, "
        "last_notified_at = CASE WHEN %(delivered)s THEN %(now)s ELSE last_notified_at END, "
        "state = CASE WHEN %(resolving)s THEN 'resolved' ELSE state END, "
        "resolved_at = CASE WHEN %(resolving)s THEN %(now)s ELSE resolved_at END WHERE id = %(id)s",
        {
            "summary": summary,
            "details": Jsonb(details),
            "count": 1 if delivered else 0,
            "delivered": delivered,
            "now": now,
            "resolving": resolving,
            "id": episode_id,
        },
    )
    return delivered
