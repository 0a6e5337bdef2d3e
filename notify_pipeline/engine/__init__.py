"""The delivery engine: claim due notifications, decide, send, write results back. Plain Python,
tested without Dagster; the Dagster jobs and the CLI both call it."""
