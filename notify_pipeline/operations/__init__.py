"""Operator procedures of the runbook as plain, typed modules: SQL and Python, tested without Dagster."""
