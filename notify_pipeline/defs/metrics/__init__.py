"""Dagster wiring of the metrics export: one job, run every minute by a schedule."""
