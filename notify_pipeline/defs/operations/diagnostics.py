"""diagnostics_job: any runbook diagnostic, chosen by op config, as Markdown metadata.

Thin wiring over notify_pipeline.operations.diagnostics: the op opens the queue database, runs the
report and attaches it (Markdown table and row count). Read-only; bad input fails the run with
the one-line reason.
"""

import dagster as dg
from pydantic import Field

from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.operations.diagnostics import REPORTS, DiagnosticsError, render_markdown, run_report


class DiagnosticsConfig(dg.Config):
    report: str = Field(
        default="failures",
        description="Which report: " + "; ".join(f"{name}: {what}" for name, what in REPORTS.items()),
    )
    window_hours: float | None = Field(
        default=None, description="Look-back window in hours (unset: the report's default)."
    )
    template: str | None = Field(default=None, description="Meta template name, for template_failures.")
    correlation_id: str | None = Field(default=None, description="For trail.")
    limit: int | None = Field(default=None, description="Rows at most (unset: the report's default).")


@dg.op(tags={"kind": "postgres"})
def run_diagnostic(context: dg.OpExecutionContext, config: DiagnosticsConfig, queue_db: QueueDatabase) -> int:
    """Run the configured report and attach it as metadata; returns its row count."""
    try:
        with queue_db.connection(actor=f"diagnostics_job:{context.run_id[:8]}") as conn:
            report = run_report(
                conn,
                config.report,
                hours=config.window_hours,
                limit=config.limit,
                template=config.template,
                correlation_id=config.correlation_id,
            )
    except DiagnosticsError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.add_output_metadata(
        {
            "report": dg.MetadataValue.md(render_markdown(report)),
            "rows": len(report.rows),
            "name": report.name,
        }
    )
    return len(report.rows)


@dg.job(
    tags={"dagster/max_retries": "0"},
    description="Runbook diagnostics (read-only): pick the report in the op config.",
)
def diagnostics_job() -> None:
    run_diagnostic()
