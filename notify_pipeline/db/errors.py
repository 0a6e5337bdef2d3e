"""The database faults every long-lived caller rides out (a drain, the receipt service), and their one line.

OperationalError and InterfaceError mean the connection or the server went away (a restart, a
failover, a cut network): retry on a new connection. Anything else is about the statement or the
data, and retrying would meet it again.
"""

from __future__ import annotations

import psycopg

DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


def first_line(exc: BaseException | None) -> str:
    """An exception's first line (a driver's message runs to several), or its type when it has none."""
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_db_error(exc: BaseException) -> str:
    """`OperationalError: <the first line of its text>`, for a report or a log line."""
    return f"{type(exc).__name__}: {first_line(exc)}"
