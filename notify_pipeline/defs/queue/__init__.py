"""Dagster wiring of the queue: jobs, the due-notifications sensor, the lock-sweeping schedule."""
