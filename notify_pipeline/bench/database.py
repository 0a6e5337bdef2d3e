"""The bench's own database: created fresh on the queue's server, migrated, dropped at the end.

The bench never touches the queue database itself: it creates `notify_bench_<pid>` beside it (on
the server NOTIFY_DATABASE_URL names, else the embedded PostgreSQL), so a run measures a known
state and leaves nothing behind. The user needs CREATEDB.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from notify_pipeline.db import urls
from notify_pipeline.db.connect import connect
from notify_pipeline.db.migrate import upgrade
from notify_pipeline.demo import load_template_catalog
from notify_pipeline.engine.templates_store import upsert_templates

ACTOR = "bench"


def scratch_name() -> str:
    return f"notify_bench_{os.getpid()}"


@contextmanager
def scratch_database(
    server_url: str, name: str | None = None, prepare: Callable[[str], object] = upgrade
) -> Iterator[str]:
    """Create a new database on the server of `server_url`, `prepare` it (by default: migrate it
    to the queue schema) and yield its URL; drop it afterwards."""
    name = name or scratch_name()
    _drop(server_url, name)  # left over by a run that was killed
    with psycopg.connect(urls.libpq(server_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urls.with_database(server_url, name)
    try:
        prepare(url)
        yield url
    finally:
        _drop(server_url, name)


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(urls.libpq(server_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def open_connection(url: str) -> psycopg.Connection:
    """An autocommit connection acting as the bench (the audit log names it)."""
    return connect(url, actor=ACTOR, autocommit=True)


def load_demo_templates(conn: psycopg.Connection) -> list[dict]:
    """The demo catalog into whatsapp_templates, so the engine's template checks run; returns it."""
    catalog = load_template_catalog()
    upsert_templates(conn, catalog)
    return catalog


def clear_queue(conn: psycopg.Connection) -> None:
    """Empty the queue tables between measurements (ids keep counting, so they stay unique per run)."""
    conn.execute("TRUNCATE notifications, notification_audit_log, observability_events")


def settle(conn: psycopg.Connection) -> None:
    """After a bulk load: vacuum and analyse the loaded tables now, so that autovacuum does not
    start on them in the middle of the next measurement, and the planner has statistics (as it
    would for a long-lived queue)."""
    conn.execute("VACUUM (ANALYZE) notifications, notification_audit_log, contact_preferences")
