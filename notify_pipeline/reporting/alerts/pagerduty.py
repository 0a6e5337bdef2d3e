"""PagerDuty Events API v2: an alert episode triggers an incident, its resolution resolves it.

One dedup key per episode (`notify-pipeline/<alert name>/<episode id>`), so a re-sent trigger
never opens a second incident and the resolve closes exactly the incident the episode opened.
PagerDuty mirrors the `alerts` table: each tick, `sync` triggers an open episode PagerDuty has not
accepted yet and resolves a resolved episode PagerDuty still has open, so a failed delivery (a
bad URL, PagerDuty down, a timeout) is recorded in the episode's details and retried on the next
tick. The chat webhook keeps its own delivery state: one channel failing never blocks the other.

The routing key is a secret (anyone holding it can open incidents): it lives only in this
object, never in the alerts table, logs, run config or Dagster metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from notify_pipeline.reporting.alerts.sink import Delivery, Retrying, hide, scrub

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SOURCE = "notify-pipeline"
SUMMARY_LIMIT = 1024  # PagerDuty's limit on payload.summary
DEDUP_LIMIT = 255  # ... and on dedup_key
RETRY_RESOLVE_FOR = timedelta(days=7)  # a resolve that keeps failing is retried this long
REDACTED = "<pagerduty routing key>"
# PagerDuty's severities: critical, error, warning, info. Alerts not listed page as errors.
SEVERITY = {"worker_health": "critical", "opt_out_spike": "warning", "throttling": "warning"}


def dedup_key(alert_name: str, episode_id: int) -> str:
    return f"{SOURCE}/{alert_name}/{episode_id}"[:DEDUP_LIMIT]


def severity(alert_name: str) -> str:
    return SEVERITY.get(alert_name, "error")


def trigger_event(
    routing_key: str, key: str, alert_name: str, summary: str, details: dict[str, Any]
) -> dict[str, Any]:
    """A trigger in PagerDuty's Events v2 shape."""
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1] + "…"
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": summary,
            "source": SOURCE,
            "severity": severity(alert_name),
            "component": alert_name,
            "group": "notifications",
            "class": "alert",
            "custom_details": details,
        },
        "client": SOURCE,
    }


def resolve_event(routing_key: str, key: str) -> dict[str, Any]:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}


class PagerDuty:
    """Sends Events v2 to one routing key; never raises, never takes longer than budget_s per event."""

    def __init__(self, routing_key: str, *, events_url: str = DEFAULT_EVENTS_URL, **retrying: Any) -> None:
        """`retrying` takes the fields of sink.Retrying (timeout_s, retries, backoff_s, budget_s, sleep)."""
        self._routing_key = routing_key
        self.events_url = events_url
        self.retrying = Retrying(**retrying)
        scrub(routing_key, REDACTED)

    def __repr__(self) -> str:  # never show the key, even in a traceback's locals
        return f"PagerDuty({REDACTED}, events_url={self.events_url!r})"

    def redact(self, text: str) -> str:
        return hide(text, self._routing_key, REDACTED)

    def send(self, event: dict[str, Any]) -> Delivery:
        return self.retrying.post(self.events_url, event, channel="pagerduty", redact=self.redact)

    def trigger(self, key: str, alert_name: str, summary: str, details: dict[str, Any]) -> Delivery:
        return self.send(trigger_event(self._routing_key, key, alert_name, summary, details))

    def resolve(self, key: str) -> Delivery:
        return self.send(resolve_event(self._routing_key, key))


@dataclass(frozen=True)
class Synced:
    """What one sync sent: (action, dedup key, delivery) for each event."""

    sent: tuple[tuple[str, str, Delivery], ...] = ()

    def describe(self) -> str:
        return "; ".join(
            f"pagerduty {action} {d.describe().removeprefix('pagerduty ')}" for action, _, d in self.sent
        )


def _custom_details(episode: dict[str, Any]) -> dict[str, Any]:
    details = episode["details"] or {}
    # Alert episodes keep their numbers under "numbers"; run-failure episodes at the top level.
    numbers = details.get("numbers") or {
        k: v for k, v in details.items() if k not in ("deliveries", "pagerduty", "facts", "first_check")
    }
    return {
        "alert": episode["alert_name"],
        "episode": episode["id"],
        "started_at": episode["started_at"].isoformat(),
        "facts": details.get("facts", []),
        "first_check": details.get("first_check", ""),
        "numbers": numbers,
    }


def sync(conn: psycopg.Connection, alert_name: str, pager: PagerDuty | None, now: datetime) -> Synced:
    """Bring PagerDuty in line with the alerts table for one alert: trigger its open episode, resolve
    its resolved ones PagerDuty may still hold open. Only the episode's `pagerduty` detail is written."""
    if pager is None:
        return Synced()
    sent: list[tuple[str, str, Delivery]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        episodes = cur.execute(
            "SELECT id, alert_name, state, summary, details, started_at, resolved_at FROM alerts "
            "WHERE alert_name = %(name)s AND (state = 'firing' OR (resolved_at > %(since)s "
            "AND details->'pagerduty'->>'state' IN ('triggered', 'trigger_failed'))) ORDER BY id",
            {"name": alert_name, "since": now - RETRY_RESOLVE_FOR},
        ).fetchall()
    for episode in episodes:
        state = dict((episode["details"] or {}).get("pagerduty") or {})
        key = state.get("dedup_key") or dedup_key(alert_name, episode["id"])
        if episode["state"] == "firing":
            if state.get("state") == "triggered":
                continue
            action = "trigger"
            delivery = pager.trigger(key, alert_name, episode["summary"], _custom_details(episode))
            ok_state, failed_state = "triggered", "trigger_failed"
        else:
            action = "resolve"
            delivery = pager.resolve(key)
            # A trigger that never got an answer may still have opened an incident: resolve it too.
            ok_state, failed_state = "resolved", state.get("state", "triggered")
        state.update(dedup_key=key, state=ok_state if delivery.ok else failed_state)
        state[f"{action}_attempts"] = state.get(f"{action}_attempts", 0) + 1
        if delivery.ok:
            state[f"{ok_state}_at"] = now.isoformat()
            state.pop("last_error", None)
        else:
            state["last_error"] = {"at": now.isoformat(), "action": action, **delivery.as_json()}
        conn.execute(
            "UPDATE alerts SET details = jsonb_set(details, '{pagerduty}', %s) WHERE id = %s",
            (Jsonb(state), episode["id"]),
        )
        sent.append((action, key, delivery))
    return Synced(tuple(sent))
