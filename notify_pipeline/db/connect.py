"""Connections to the queue database (psycopg 3), with the timeouts every caller should have."""

from __future__ import annotations

import psycopg

from notify_pipeline.db import urls


def connect(
    url: str,
    *,
    actor: str = "notify-pipeline",
    connect_timeout_s: int = 10,
    statement_timeout_ms: int = 30_000,
    autocommit: bool = False,
) -> psycopg.Connection:
    """Open a connection that names itself (application_name) and records `actor` in the audit log.

    The statement timeout keeps a slow query from holding a sensor or a run past its own timeout;
    the idle-in-transaction timeout keeps a stuck client from pinning vacuum on the queue tables.
    """
    return psycopg.connect(
        **_connect_args(url, actor, connect_timeout_s, statement_timeout_ms), autocommit=autocommit
    )


async def connect_async(
    url: str,
    *,
    actor: str = "notify-pipeline",
    connect_timeout_s: int = 10,
    statement_timeout_ms: int = 30_000,
    autocommit: bool = True,
) -> psycopg.AsyncConnection:
    """The asyncio twin of connect(), for the delivery engine."""
    return await psycopg.AsyncConnection.connect(
        **_connect_args(url, actor, connect_timeout_s, statement_timeout_ms), autocommit=autocommit
    )


def _connect_args(url: str, actor: str, connect_timeout_s: int, statement_timeout_ms: int) -> dict:
    options = (
        f"-c statement_timeout={int(statement_timeout_ms)} "
        f"-c idle_in_transaction_session_timeout=60000 "
        f"-c notify.actor={_option_value(actor)}"
    )
    return {
        "conninfo": urls.libpq(url),
        "connect_timeout": connect_timeout_s,
        "application_name": "notify-pipeline",
        "options": options,
    }


def _option_value(value: str) -> str:
    # libpq options are space-separated; spaces and backslashes inside a value are escaped.
    return value.replace("\\", "\\\\").replace(" ", "\\ ")
