"""Alert messages as Slack-compatible JSON: `text` (what every receiver shows) plus `blocks`.

One shape for every alert: a first line with the state and the headline, a line per fact, the
first thing to check, and a footer naming the alert and when it started. No phone numbers: the
readings only ever carry masked ones (notify_mask_wa_id).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from notify_pipeline.reporting.alerts.verdict import Verdict, duration

SECTION_LIMIT = 2900  # Slack refuses section text over 3,000 characters
MARKS = {
    "firing": ":rotating_light: FIRING",
    "repeat": ":warning: STILL FIRING",
    "resolved": ":white_check_mark: RESOLVED",
}


def _escape(text: str) -> str:
    # Slack reads <...> as links and mentions: plain text must escape &, < and >.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def stamp(at: datetime) -> str:
    """A time in UTC (the database hands timestamps back in its session's zone)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def compose(lines: list[str], footer: str) -> dict[str, Any]:
    """The payload for a message of `lines` (first line is the summary) and a footer."""
    body = _escape("\n".join(line for line in lines if line))
    if len(body) > SECTION_LIMIT:
        body = body[: SECTION_LIMIT - 1] + "…"
    return {
        "text": body + "\n" + _escape(footer),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(footer)}]},
        ],
    }


def alert_message(
    kind: str,
    title: str,
    name: str,
    verdict: Verdict,
    *,
    started_at: datetime,
    now: datetime,
    was: str | None = None,
) -> dict[str, Any]:
    """kind: firing (first notice), repeat (a reminder while it lasts) or resolved."""
    lasted = duration((now - started_at).total_seconds())
    if kind == "resolved":
        lines = [f"{MARKS[kind]} | {title} after {lasted}: {verdict.headline}"]
        if was:
            lines.append(f"Was: {was}")
    else:
        head = f"{MARKS[kind]} ({lasted}) | {title}" if kind == "repeat" else f"{MARKS[kind]} | {title}"
        lines = [f"{head}: {verdict.headline}", *(f"• {fact}" for fact in verdict.facts)]
        if verdict.first_check:
            lines.append(f"First check: {verdict.first_check}")
    return compose(lines, f"alert {name} · started {stamp(started_at)}")
