"""Queue commands of `notify-pipeline`: enqueue, sweep, retry-failed, stop, resume, status,
seed-demo (`send` has a module of its own). Each opens the queue database named by the environment
and calls the engine."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import click
import psycopg

from notify_pipeline import settings
from notify_pipeline.cli.common import (
    Number,
    OperatorError,
    Reason,
    as_operator_error,
    on_queue,
    queue_connection,
)
from notify_pipeline.db.errors import first_line

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 3660 * 86400  # ten years: beyond it a window means "everything"


def parse_duration(value: str, max_s: float = MAX_DURATION_S) -> timedelta:
    """'90s', '15m', '1.5h', '2d' or plain seconds, at most `max_s`."""
    match = _DURATION.match(value or "")
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration: use e.g. 30s, 15m, 2h or 1d")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    if not seconds <= max_s:  # also inf and nan
        raise click.BadParameter(f"{value[:40]!r} is too long: at most {max_s / 86400:g} days")
    return timedelta(seconds=seconds)


class Duration(click.ParamType):
    """A duration option; a bad one is one line (OperatorError), never a traceback."""

    name = "duration"

    def __init__(self, max_s: float = MAX_DURATION_S) -> None:
        self.max_s = max_s

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value, self.max_s)
        except click.BadParameter as exc:
            name = max(param.opts, key=len) if param is not None and param.opts else "duration"
            raise OperatorError(f"{name}: {exc.message}") from None


@click.command("enqueue")
@click.option("--to", required=True, help="Recipient, international format (+250788123456).")
@click.option("--template", help="Template name (e.g. welcome_message).")
@click.option("--language", help="Language code of the template (default en) or of the text.")
@click.option("--param", "params", multiple=True, help="Body variable, in order; repeat for each.")
@click.option("--text", help="Free-form text instead of a template.")
@click.option("--domain", default="core", show_default=True)
@click.option("--type", "notification_type", help="notification_type (default: the template name).")
@click.option("--dedupe-key", help="A second enqueue with this key returns the first id.")
@click.option(
    "--delay-seconds",
    type=Number(float, 0, 2_592_000, note=" (30 days)"),
    help="Send no earlier than this many seconds from now (up to 30 days).",
)
@click.option("--override-quiet-hours", is_flag=True, help="May go out during the contact's quiet hours.")
def enqueue_command(
    to,
    template,
    language,
    params,
    text,
    domain,
    notification_type,
    dedupe_key,
    delay_seconds,
    override_quiet_hours,
) -> None:
    """Queue one notification through queueNotification() and print its id."""
    from notify_pipeline.engine.enqueue import build_message, enqueue

    try:
        message = build_message(to, template=template, language=language or "en", params=params, text=text)
    except ValueError as exc:
        raise OperatorError(f"{exc}: use --template NAME or --text TEXT") from exc
    meta = {"domain": domain, "quiet_hours_override": override_quiet_hours}
    for key, value in (
        ("type", notification_type),
        ("dedupe_key", dedupe_key),
        ("delay_seconds", delay_seconds),
        ("language", language if text is not None else None),
    ):
        if value is not None:
            meta[key] = value
    with queue_connection("enqueue") as conn:
        try:
            click.echo(enqueue(conn, message, meta))
        except psycopg.errors.InvalidParameterValue as exc:
            raise OperatorError(first_line(exc)) from exc


@click.command("sweep")
@click.option(
    "--older-than",
    type=Duration(366 * 86400),
    default="15m",
    show_default=True,
    help="Release claims older than this (0 releases every claim: only when no worker runs).",
)
def sweep_command(older_than) -> None:
    """Release stale claims left by workers that died."""
    from notify_pipeline.engine.operations import sweep_locks

    click.echo(f"released {on_queue('sweep', sweep_locks, older_than)} stale claim(s)")


@click.command("retry-failed")
@click.option("--since", type=Duration(3660 * 86400), help="Only rows created within this window (e.g. 1h).")
@click.option("--domain")
@click.option("--error-code", help="last_error_code, e.g. 131000, timeout, http_503.")
@click.option("--template", help="Meta template name.")
@click.option(
    "--include-permanent",
    is_flag=True,
    help="Also rows an opt-out cancelled, expired rows and never-retry codes (131050, 130403, ...); "
    "contacts opted out now are never retried.",
)
@click.option("--confirm", is_flag=True, help="Queue them again; without it, only count.")
def retry_failed_command(since, domain, error_code, template, include_permanent, confirm) -> None:
    """Queue failed notifications again with fresh retries (a dry-run count unless --confirm).

    Left alone, and counted by reason: rows of contacts opted out now, and unless
    --include-permanent, what an opt-out cancelled, expired rows and the code table's never-retry
    codes."""
    from notify_pipeline.engine.operations import RetryFilter, retry_failed

    with as_operator_error(ValueError):
        selection = RetryFilter(
            since=since,
            domain=domain,
            error_code=error_code,
            template=template,
            include_permanent=include_permanent,
        )
        selection.where()
    click.echo(on_queue("retry-failed", retry_failed, selection, dry_run=not confirm).describe())


@click.command("stop")
@click.option("--reason", required=True, type=Reason(), help="Why: recorded with the stop.")
def stop_command(reason) -> None:
    """Emergency stop: pause sending and hold every waiting notification."""
    from notify_pipeline.engine.operations import emergency_stop

    held = on_queue("stop", emergency_stop, reason, "cli")
    click.echo(f"sending paused; {held} waiting notification(s) held")


@click.command("resume")
@click.option("--reason", required=True, type=Reason(), help="Why it is safe again.")
@click.option(
    "--hold",
    is_flag=True,
    help="Lift this sender's auth or account hold (set when Meta refused the token or the account; "
    "fix that first) instead of the emergency stop.",
)
def resume_command(reason, hold) -> None:
    """Resume after an emergency stop: lift the pause, queue the held notifications again. With
    --hold: lift the sender's auth or account hold instead (the two are kept apart)."""
    from notify_pipeline.engine.operations import resume_sending

    click.echo(on_queue("resume", resume_sending, settings.sender_key(), reason, "cli", hold=hold).describe())


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON, for scripts.")
def status_command(as_json) -> None:
    """The runbook's system status check: worker activity, queue shape, outcomes and failure rate by
    domain (the figures the README's "Figures" table defines)."""
    from notify_pipeline.operations.status import queue_status, render

    status = on_queue("status", queue_status)
    click.echo(json.dumps(status.as_dict(), indent=2) if as_json else render(status))


@click.command("seed-demo")
@click.option("--notifications", type=Number(int, 0, 100_000), default=200, show_default=True)
@click.option("--contacts", type=Number(int, 1, 10_000), default=40, show_default=True)
def seed_demo_command(notifications, contacts) -> None:
    """Load the demo templates, contacts in several time zones and a stream of notifications."""
    from notify_pipeline.demo.seed import seed_demo

    report = on_queue("seed-demo", seed_demo, notifications=notifications, contacts=contacts)
    click.echo(
        f"{report.templates} templates, {report.contacts} contacts ({report.opted_out} opted out, "
        f"{report.in_quiet_hours} in quiet hours now), {report.notifications} notifications queued"
    )


COMMANDS = [
    enqueue_command,
    sweep_command,
    retry_failed_command,
    stop_command,
    resume_command,
    status_command,
    seed_demo_command,
]
