"""Which queue database to use: the one NOTIFY_DATABASE_URL names, else the embedded server."""

from __future__ import annotations

import psycopg
from psycopg import sql

from notify_pipeline import settings
from notify_pipeline.db import urls
from notify_pipeline.db.embedded import EmbeddedPostgres

QUEUE_DATABASE = "notify"
DAGSTER_DATABASE = "notify_dagster"


def embedded_server() -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir() / "postgres")


def queue_database_url() -> str:
    """The queue database URL in use, starting (or reusing) the embedded server if none is set."""
    configured = settings.database_url_from_env()
    if configured:
        return urls.libpq(configured)
    server_url = embedded_server().ensure_running()
    ensure_database(server_url, QUEUE_DATABASE)
    return urls.with_database(server_url, QUEUE_DATABASE)


def dagster_storage_url(queue_url: str) -> str:
    """Dagster's storage: DAGSTER_POSTGRES_URL, else a database of its own beside the queue's."""
    import os

    configured = os.environ.get("DAGSTER_POSTGRES_URL", "").strip()
    if configured:
        return urls.for_driver(configured, "psycopg2")
    target = urls.with_database(queue_url, DAGSTER_DATABASE)
    ensure_database(queue_url, DAGSTER_DATABASE)
    return urls.for_driver(target, "psycopg2")


def ensure_database(server_url: str, name: str) -> bool:
    """Create database `name` on the server of `server_url` unless it exists; True if created."""
    with psycopg.connect(urls.libpq(server_url), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False  # created by a concurrent caller
        return True
