"""export_metrics_job: publish the queue's Prometheus metrics (textfile, and a Pushgateway if set)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.reporting import metrics
from notify_pipeline.reporting.metrics_sql import STATEMENT_TIMEOUT_MS


class MetricsExportConfig(dg.Config):
    textfile: str | None = Field(
        default=None,
        description="Where node_exporter's textfile collector reads the metrics (a .prom file). "
        "Default: NOTIFY_METRICS_TEXTFILE, else <data dir>/metrics/notify_pipeline.prom.",
    )
    pushgateway_url: str | None = Field(
        default=None,
        description="Pushgateway to push to as well, e.g. http://pushgateway:9091. "
        "Default: NOTIFY_PUSHGATEWAY_URL; unset: no push.",
    )
    push_job: str = Field(default=metrics.DEFAULT_JOB, description="The Pushgateway's job label.")
    push_timeout_s: float = Field(
        default=metrics.PUSH_TIMEOUT_S, gt=0, le=60, description="Seconds to wait for the Pushgateway."
    )
    statement_timeout_ms: int = Field(
        default=STATEMENT_TIMEOUT_MS,
        ge=100,
        le=60_000,
        description="Longest a metrics query may run; a slower database fails the export.",
    )


@dg.op(tags={"kind": "prometheus"})
def export_metrics(
    context: dg.OpExecutionContext, config: MetricsExportConfig, queue_db: QueueDatabase
) -> int:
    """Read one snapshot of the queue and publish it in Prometheus' format: an atomic textfile
    write, then a push when a Pushgateway is configured. Returns the number of series."""
    textfile = Path(config.textfile).expanduser() if config.textfile else metrics.textfile_from_env()
    gateway = config.pushgateway_url or metrics.pushgateway_url_from_env()
    with queue_db.connection(actor=f"export_metrics_job:{context.run_id[:8]}") as conn:
        try:
            result = metrics.export(
                conn,
                textfile=textfile,
                gateway_url=gateway,
                job=config.push_job,
                timeout_s=config.push_timeout_s,
                statement_timeout_ms=config.statement_timeout_ms,
            )
        except metrics.PushError as exc:
            # The textfile is already written; the run fails so an unreachable gateway is seen.
            raise dg.Failure(
                description=str(exc), metadata={"textfile": str(textfile), "pushed": False}
            ) from None
    context.add_output_metadata(
        {
            "series": result.series,
            "textfile": str(result.textfile),
            "pushed": result.pushed_to is not None,
            "pushgateway": result.pushed_to or "not configured",
        }
    )
    return result.series


@dg.job(
    tags={"dagster/max_retries": "0"},
    description="Publish the Prometheus metrics (the same as GET /metrics on `notify-pipeline serve`) "
    "to a textfile and a Pushgateway.",
)
def export_metrics_job() -> None:
    export_metrics()
