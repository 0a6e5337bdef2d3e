"""Apply the versioned migrations (Alembic) to a queue database, with errors an operator can act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from notify_pipeline.db import urls
from notify_pipeline.db.errors import first_line

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x6E6F7469  # any constant every migrator shares
MIN_SERVER_VERSION = 150000  # PostgreSQL 15: MERGE, NULLS NOT DISTINCT, and what CI tests against


class MigrationError(RuntimeError):
    """A migration could not run; the message says what failed and what to do about it."""


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(
        urls.for_driver(url, "psycopg"), poolclass=sa.NullPool, connect_args={"connect_timeout": 10}
    )


def upgrade(url: str) -> UpgradeResult:
    """Bring the database at `url` to the newest revision. A second call changes nothing."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            _check_server(connection)
            # Before reading the revision: a second migrator waits here, then finds nothing to do.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            before = current_revision(connection)
            _check_known_revision(before)
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
            return UpgradeResult(before=before, after=current_revision(connection) or "")
    except sa.exc.OperationalError as exc:
        raise MigrationError(_connection_advice(url, exc.orig)) from exc
    except sa.exc.DBAPIError as exc:
        raise MigrationError(_programming_advice(url, exc.orig)) from exc
    except psycopg.Error as exc:  # raised by the SQL-file migrations, which use the driver directly
        raise MigrationError(_programming_advice(url, exc)) from exc
    finally:
        engine.dispose()


def _check_server(connection: sa.Connection) -> None:
    version = int(connection.exec_driver_sql("SHOW server_version_num").scalar_one())
    if version < MIN_SERVER_VERSION:
        raise MigrationError(
            f"the server runs PostgreSQL {version // 10000}; notify-pipeline needs PostgreSQL 15 or newer"
        )


def _check_known_revision(revision: str | None) -> None:
    if revision is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        raise MigrationError(
            f"the database is at migration {revision!r}, which this version of notify-pipeline does not "
            f"know (newest known: {head_revision()!r}); it was migrated by a newer release: upgrade "
            f"notify-pipeline instead of downgrading the database"
        )


def _connection_advice(url: str, error: BaseException | None) -> str:
    reason = first_line(error)
    where = urls.mask(url)
    if "does not exist" in reason and "database" in reason:
        fix = f"create it (createdb {urls.database_name(url)}) or point NOTIFY_DATABASE_URL at an existing database"
    elif "password authentication failed" in reason or "no password supplied" in reason:
        fix = "check the user and password in NOTIFY_DATABASE_URL"
    else:
        fix = (
            "check that the server runs and that NOTIFY_DATABASE_URL names the right host, port and database"
        )
    return f"cannot connect to the queue database {where}: {reason}; {fix}"


def _programming_advice(url: str, error: BaseException | None) -> str:
    reason = first_line(error)
    if isinstance(
        error,
        psycopg.errors.DuplicateTable | psycopg.errors.DuplicateFunction | psycopg.errors.DuplicateObject,
    ):
        return (
            f"the database {urls.mask(url)} already holds objects that notify-pipeline did not create "
            f"({reason}); migrate into an empty database, or one notify-pipeline created"
        )
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return f"the user in {urls.mask(url)} may not change the schema ({reason}); migrate as the owner of the database"
    return f"migrating {urls.mask(url)} failed: {reason}"
