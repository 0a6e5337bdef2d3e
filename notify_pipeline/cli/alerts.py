"""`notify-pipeline alerts`: the alerts firing now and the recent episodes, from the alerts table
(reporting/alerts/listing.py); `--json` for scripts."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import click

from notify_pipeline.cli.common import OperatorError, queue_connection

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
MAX_SINCE_S = 366 * 86400


def parse_since(text: str) -> float:
    """30m, 24h, 7d, 2w or plain seconds; from one second to a year."""
    match = _DURATION.match(text)
    if not match:
        raise OperatorError(f"--since takes a duration such as 30m, 24h or 7d, not {text!r}")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds) or not 1 <= seconds <= MAX_SINCE_S:
        raise OperatorError(f"--since must be from 1s to 366d, not {text!r}")
    return seconds


@click.command("alerts")
@click.option("--since", default="24h", show_default=True, help="Episodes of this window: 30m, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (firing and recent episodes) for scripts.")
def alerts(since: str, as_json: bool) -> None:
    """Alerts firing now and the recent episodes: started, resolved, notifications sent, headline."""
    from notify_pipeline.reporting.alerts.listing import firing_alerts, recent_episodes, render

    since_s = parse_since(since)
    with queue_connection("alerts") as conn:
        firing = firing_alerts(conn)
        recent = recent_episodes(conn, since_s)
    now = datetime.now(UTC)
    if as_json:
        body = {
            "firing": [episode.as_json(now) for episode in firing],
            "since_s": since_s,
            "episodes": [episode.as_json(now) for episode in recent],
        }
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(render(firing, recent, since_s, now))
