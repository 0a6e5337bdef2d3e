"""export_metrics_schedule: publish the metrics to a textfile or a Pushgateway, when turned on.

Prometheus scrapes `GET /metrics` on `notify-pipeline serve`: the numbers come from the database
at each scrape, so no Dagster run is needed for them. This schedule is for deployments that read
node_exporter's textfile collector or a Pushgateway instead. It is stopped by default (a run a
minute was 1,440 Dagster runs a day); turned on, it runs every 5 minutes (288 runs a day).
Counters and histograms are cumulative in the database, so a slower cadence loses nothing: each
export carries every count so far, and `rate()` over 10 minutes or more reads them as usual.
"""

import dagster as dg

from notify_pipeline.defs.metrics.jobs import export_metrics_job

EXPORT_CRON = "*/5 * * * *"

export_metrics_schedule = dg.ScheduleDefinition(
    name="export_metrics_schedule",
    job=export_metrics_job,
    cron_schedule=EXPORT_CRON,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Publish the Prometheus metrics to a textfile and/or a Pushgateway every 5 minutes. "
    "Stopped by default: Prometheus scrapes /metrics on `notify-pipeline serve` instead. Turn it on "
    "only where node_exporter's textfile collector or a Pushgateway is what Prometheus reads.",
)
