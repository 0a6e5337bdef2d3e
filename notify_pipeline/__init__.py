"""notify-pipeline: WhatsApp notifications on PostgreSQL, run as a Dagster code location."""

__version__ = "0.1.0"
