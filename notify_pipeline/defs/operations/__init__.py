"""Dagster wiring of the operator procedures in notify_pipeline.operations."""
