"""`notify-pipeline diagnose ...`: the runbook's diagnostic queries as read-only reports, printed
as tables. Each subcommand calls notify_pipeline.operations.diagnostics; bad input (a negative
window, an unknown template or correlation id) is one line on stderr and exit code 2. With
--json, the report (its tables, notes and headline figures) is printed as JSON for scripts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import click

from notify_pipeline.cli.common import as_operator_error, on_queue


class ReportCommand(NamedTuple):
    """One `diagnose` subcommand: the report it runs (named with hyphens), the defaults of the
    options it takes (None: it takes none), the argument it takes, and its help."""

    name: str
    help: str
    hours: float | None = None
    limit: int | None = None
    argument: str | None = None


# Every subcommand does the same: check the input, run its report, print it. They differ only here.
REPORT_COMMANDS = (
    ReportCommand(
        "failures", "Failed notifications by error code: count, meaning, fix and an example.", hours=1.0
    ),
    ReportCommand(
        "template-failures",
        "The latest failures of TEMPLATE (Meta template name) and the template's state.",
        limit=10,
        argument="template",
    ),
    ReportCommand(
        "deferred",
        "Queued notifications waiting for a future time, grouped by why (a sample of --limit rows).",
        limit=10,
    ),
    ReportCommand(
        "quiet-hours-violations",
        "Notifications sent during the contact's own quiet hours, in the contact's own time zone.",
        hours=24.0,
        limit=50,
    ),
    ReportCommand(
        "top-recipients",
        "Recipients with the most notifications (masked), with sent and failed counts.",
        hours=24.0,
        limit=10,
    ),
    ReportCommand(
        "by-hour",
        "Notifications per local hour of day (NOTIFY_REPORT_TIMEZONE) with the success rate.",
        hours=168.0,
    ),
    ReportCommand("errors", "The most common error messages, with code and meaning.", hours=24.0, limit=10),
    ReportCommand(
        "trail",
        "Every notification of CORRELATION_ID and its audit events in order.",
        argument="correlation_id",
    ),
)


def run(
    name: str, *, hours: float | None = None, limit: int | None = None, as_json: bool = False, **options: str
) -> None:
    """Check the input before connecting, run the report, print it (as tables, or JSON)."""
    from notify_pipeline.operations.diagnostics import DiagnosticsError, render, run_report, to_json
    from notify_pipeline.operations.diagnostics_base import check_hours, check_limit

    with as_operator_error(DiagnosticsError):
        if hours is not None:
            check_hours(hours)
        if limit is not None:
            check_limit(limit)
        report = on_queue(f"diagnose-{name}", run_report, name, hours=hours, limit=limit, **options)
    click.echo(to_json(report) if as_json else render(report))


def command(spec: ReportCommand) -> click.Command:
    """The click command of one report: --json, then its argument, --hours and --limit."""
    report = spec.name.replace("-", "_")

    def callback(**options: Any) -> None:
        run(report, **options)

    decorators: list[Callable[..., Any]] = [
        click.option(
            "--json", "as_json", is_flag=True, help="Print the report as JSON (numbers masked the same way)."
        )
    ]
    if spec.argument:
        decorators.append(click.argument(spec.argument))
    if spec.hours is not None:
        decorators.append(
            click.option(
                "--hours",
                type=float,
                default=spec.hours,
                show_default=True,
                help="Look-back window in hours.",
            )
        )
    if spec.limit is not None:
        decorators.append(
            click.option("--limit", type=int, default=spec.limit, show_default=True, help="Rows at most.")
        )
    for decorate in reversed(decorators):  # the first listed is the first in --help
        callback = decorate(callback)
    return click.command(spec.name, help=spec.help)(callback)


@click.group("diagnose")
def diagnose() -> None:
    """Runbook diagnostics: read-only reports with Meta's real error meanings; numbers are masked."""


for _spec in REPORT_COMMANDS:
    diagnose.add_command(command(_spec))
