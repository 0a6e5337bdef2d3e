"""PostgreSQL URL helpers: one canonical libpq form, driver-specific forms derived from it."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from notify_pipeline import redact


class DatabaseUrlError(ValueError):
    """A database URL that cannot name a PostgreSQL database."""


def parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy raises ArgumentError, whose text repeats the URL
        raise DatabaseUrlError(
            f"{_outline(url)} is not a database URL; expected postgresql://user:password@host:port/database"
        ) from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise DatabaseUrlError(
            f"{mask(url)} is not a PostgreSQL URL; expected postgresql://user:password@host:port/database"
        )
    if not parsed.database:
        raise DatabaseUrlError(f"{mask(url)} names no database; add one after the last '/'")
    return parsed


def libpq(url: str) -> str:
    """The URL psycopg and psql accept (no SQLAlchemy driver suffix)."""
    return parse(url).set(drivername="postgresql").render_as_string(hide_password=False)


def for_driver(url: str, driver: str) -> str:
    """The SQLAlchemy URL for a driver: 'psycopg' for the queue, 'psycopg2' for Dagster's storage.

    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, whose server-side parameters break
    dagster-postgres (`NOTIFY run_events, $1`), so Dagster must get postgresql+psycopg2://.
    """
    return parse(url).set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    return parse(url).set(database=database).render_as_string(hide_password=False)


def database_name(url: str) -> str:
    return str(parse(url).database)


def mask(url: str) -> str:
    """The URL with its password hidden, for messages and logs: the one after the user name and
    one given as a query parameter (libpq takes ?password= and ?sslpassword= too)."""
    try:
        return redact.hide_query_secrets(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return "<unparseable database URL>"


def _outline(url: str) -> str:
    """How an unparseable URL is named in a message: never its text when it may hold a password."""
    if any(mark in url for mark in (":", "@", "=")) or len(url) > 80:
        return f"the URL given ({len(url)} characters, not shown: it may hold a password)"
    return repr(url)
