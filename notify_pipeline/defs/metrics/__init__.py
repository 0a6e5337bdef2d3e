"""Dagster wiring of the optional metrics export (textfile, Pushgateway): one job, and a schedule
that is stopped by default because Prometheus scrapes `GET /metrics` on `notify-pipeline serve`."""
