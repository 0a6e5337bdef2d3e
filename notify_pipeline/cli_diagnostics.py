"""`notify-pipeline diagnose ...`: the runbook's diagnostic queries as read-only reports, printed
as tables. Each subcommand calls notify_pipeline.operations.diagnostics; bad input (a negative
window, an unknown template or correlation id) is one line on stderr and exit code 2. With
--json, the report (its tables, notes and headline figures) is printed as JSON for scripts."""

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


_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the report as JSON (numbers masked the same way)."
)


def _run(
    name: str, *, hours: float | None = None, limit: int | None = None, as_json: bool = False, **options: str
) -> None:
    """Check the input before connecting, run the report, print it (as tables, or JSON)."""
    from notify_pipeline.cli import OperatorError
    from notify_pipeline.operations.diagnostics import DiagnosticsError, render, run_report, to_json
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
    click.echo(to_json(report) if as_json else render(report))


@click.group("diagnose")
def diagnose() -> None:
    """Runbook diagnostics: read-only reports with Meta's real error meanings; numbers are masked."""


@diagnose.command("failures")
@_json_option
@_hours_option(1.0)
def failures_command(hours: float, as_json: bool) -> None:
    """Failed notifications by error code: count, meaning, fix and an example."""
    _run("failures", hours=hours, as_json=as_json)


@diagnose.command("template-failures")
@_json_option
@click.argument("template")
@_limit_option(10)
def template_failures_command(template: str, limit: int, as_json: bool) -> None:
    """The latest failures of TEMPLATE (Meta template name) and the template's state."""
    _run("template_failures", limit=limit, template=template, as_json=as_json)


@diagnose.command("deferred")
@_json_option
@_limit_option(10)
def deferred_command(limit: int, as_json: bool) -> None:
    """Queued notifications waiting for a future time, grouped by why (a sample of --limit rows)."""
    _run("deferred", limit=limit, as_json=as_json)


@diagnose.command("quiet-hours-violations")
@_json_option
@_hours_option(24.0)
@_limit_option(50)
def quiet_hours_violations_command(hours: float, limit: int, as_json: bool) -> None:
    """Notifications sent during the contact's own quiet hours, in the contact's own time zone."""
    _run("quiet_hours_violations", hours=hours, limit=limit, as_json=as_json)


@diagnose.command("top-recipients")
@_json_option
@_hours_option(24.0)
@_limit_option(10)
def top_recipients_command(hours: float, limit: int, as_json: bool) -> None:
    """Recipients with the most notifications (masked), with sent and failed counts."""
    _run("top_recipients", hours=hours, limit=limit, as_json=as_json)


@diagnose.command("by-hour")
@_json_option
@_hours_option(168.0)
def by_hour_command(hours: float, as_json: bool) -> None:
    """Notifications per local hour of day (NOTIFY_REPORT_TIMEZONE) with the success rate."""
    _run("by_hour", hours=hours, as_json=as_json)


@diagnose.command("errors")
@_json_option
@_hours_option(24.0)
@_limit_option(10)
def errors_command(hours: float, limit: int, as_json: bool) -> None:
    """The most common error messages, with code and meaning."""
    _run("errors", hours=hours, limit=limit, as_json=as_json)


@diagnose.command("trail")
@_json_option
@click.argument("correlation_id")
def trail_command(correlation_id: str, as_json: bool) -> None:
    """Every notification of CORRELATION_ID and its audit events in order."""
    _run("trail", correlation_id=correlation_id, as_json=as_json)
