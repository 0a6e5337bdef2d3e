"""`notify-pipeline diagnose ...`: the runbook's diagnostic queries as read-only reports, printed
as tables. Each subcommand calls notify_pipeline.operations.diagnostics; bad input (a negative
window, an unknown template or correlation id) is one line on stderr and exit code 2."""

from __future__ import annotations

from typing import Any

import click

from notify_pipeline.cli_queue import queue_connection


def _hours_option(default: float) -> Any:
    return click.option(
        "--hours", type=float, default=default, show_default=True, help="Look-back window in hours."
    )


def _limit_option(default: int) -> Any:
    return click.option("--limit", type=int, default=default, show_default=True, help="Rows at most.")


def _run(name: str, *, hours: float | None = None, limit: int | None = None, **options: str) -> None:
    """Check the input before connecting, run the report, print it."""
    from notify_pipeline.cli import OperatorError
    from notify_pipeline.operations.diagnostics import DiagnosticsError, render, run_report
    from notify_pipeline.operations.diagnostics_base import check_hours, check_limit

    try:
        if hours is not None:
            check_hours(hours)
        if limit is not None:
            check_limit(limit)
        with queue_connection(f"diagnose-{name}") as conn:
            report = run_report(conn, name, hours=hours, limit=limit, **options)
    except DiagnosticsError as exc:
        raise OperatorError(str(exc)) from exc
    click.echo(render(report))


@click.group("diagnose")
def diagnose() -> None:
    """Runbook diagnostics: read-only reports with Meta's real error meanings; numbers are masked."""


@diagnose.command("failures")
@_hours_option(1.0)
def failures_command(hours: float) -> None:
    """Failed notifications by error code: count, meaning, fix and an example."""
    _run("failures", hours=hours)


@diagnose.command("template-failures")
@click.argument("template")
@_limit_option(10)
def template_failures_command(template: str, limit: int) -> None:
    """The latest failures of TEMPLATE (Meta template name) and the template's state."""
    _run("template_failures", limit=limit, template=template)


@diagnose.command("deferred")
@_limit_option(10)
def deferred_command(limit: int) -> None:
    """Queued notifications waiting for a future time, grouped by why (a sample of --limit rows)."""
    _run("deferred", limit=limit)


@diagnose.command("quiet-hours-violations")
@_hours_option(24.0)
@_limit_option(50)
def quiet_hours_violations_command(hours: float, limit: int) -> None:
    """Notifications sent during the contact's own quiet hours, in the contact's own time zone."""
    _run("quiet_hours_violations", hours=hours, limit=limit)


@diagnose.command("top-recipients")
@_hours_option(24.0)
@_limit_option(10)
def top_recipients_command(hours: float, limit: int) -> None:
    """Recipients with the most notifications (masked), with sent and failed counts."""
    _run("top_recipients", hours=hours, limit=limit)


@diagnose.command("by-hour")
@_hours_option(168.0)
def by_hour_command(hours: float) -> None:
    """Notifications per local hour of day (NOTIFY_REPORT_TIMEZONE) with the success rate."""
    _run("by_hour", hours=hours)


@diagnose.command("errors")
@_hours_option(24.0)
@_limit_option(10)
def errors_command(hours: float, limit: int) -> None:
    """The most common error messages, with code and meaning."""
    _run("errors", hours=hours, limit=limit)


@diagnose.command("trail")
@click.argument("correlation_id")
def trail_command(correlation_id: str) -> None:
    """Every notification of CORRELATION_ID and its audit events in order."""
    _run("trail", correlation_id=correlation_id)
