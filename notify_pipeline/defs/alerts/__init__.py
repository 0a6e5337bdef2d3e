"""Dagster wiring of the alerts: one sensor per alert, a run-failure sensor, their resources."""
