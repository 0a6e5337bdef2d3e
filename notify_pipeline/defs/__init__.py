"""Dagster wiring, by domain. Each module exposes a `defs` that definitions.py merges."""
