"""Reporting and alerting: daily summaries, metrics export, alerts. Plain modules under Dagster."""
