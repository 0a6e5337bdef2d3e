"""Test fixtures: a real PostgreSQL, and a fresh migrated database for every test that asks.

The server is the embedded PostgreSQL 18 (started once per session in a temporary folder), or the
server NOTIFY_TEST_DATABASE_URL names (CI uses that for Debian's PostgreSQL 15). The schema is
migrated once into a template database; each test gets its own copy (CREATE DATABASE ... TEMPLATE),
so tests can commit, run concurrent connections and never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from notify_pipeline.db import urls
from notify_pipeline.db.connect import connect
from notify_pipeline.db.embedded import EmbeddedPostgres
from notify_pipeline.db.migrate import upgrade
from notify_pipeline_tests.support.paths import REPO_ROOT
from notify_pipeline_tests.support.ports import free_port

# The product's default quiet hours (22:00-07:00 in the contact's zone) would make every test that
# sends through a Dagster job or a run worker depend on the hour it runs at. Tests of quiet hours
# set their windows (or this variable) themselves.
os.environ.setdefault("NOTIFY_DEFAULT_QUIET_HOURS", "off")

_names = itertools.count()
_EMBEDDED: list[EmbeddedPostgres] = []  # the session's embedded server, when tests run on one


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a maintenance database on the test server (where CREATE DATABASE may run)."""
    configured = os.environ.get("NOTIFY_TEST_DATABASE_URL", "").strip()
    if configured:
        yield urls.libpq(configured)
        return
    # Not pytest's tmp_path: pytest prunes old base temp folders, and a concurrent session would
    # delete the data folder from under a running server.
    root = Path(tempfile.mkdtemp(prefix="notify-test-pg-"))
    server = EmbeddedPostgres(root)
    _EMBEDDED.append(server)
    try:
        yield server.ensure_running(port=free_port())
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class ServerControl:
    """Stop, start or restart the session's embedded PostgreSQL (fast shutdown: every connection
    is cut at once)."""

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server

    def _pg_ctl(self, *args: str) -> None:
        self.server._pg_ctl(["-w", "-t", "60", "-m", "fast", "-l", str(self.server.logfile), *args])

    def restart(self) -> None:
        self._pg_ctl("restart")

    def stop(self) -> None:
        self._pg_ctl("stop")

    def start(self) -> None:
        self._pg_ctl("start")


@pytest.fixture
def postgres_server(pg_server_url: str) -> Iterator[ServerControl]:
    """Control of the test server, on the embedded server only; it is running again afterwards."""
    if not _EMBEDDED:
        pytest.skip("stopping PostgreSQL needs the embedded server (NOTIFY_TEST_DATABASE_URL is set)")
    control = ServerControl(_EMBEDDED[0])
    yield control
    if _EMBEDDED[0].running_pid() is None:
        control.start()


def create_database(server_url: str, template: str | None = None) -> str:
    name = f"notify_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {} STRATEGY file_copy").format(sql.Identifier(template))
        conn.execute(statement)
    return urls.with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    name = urls.database_name(database_url)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(server_url, autocommit=True) as conn:
        for attempt in range(50):
            try:
                conn.execute(drop)
                return
            except psycopg.errors.InsufficientPrivilege:
                # PostgreSQL 15 refuses FORCE to a role that may not signal an autovacuum worker
                # busy in the database; the worker is done within moments.
                if attempt == 49:
                    raise
                time.sleep(0.1)


@pytest.fixture(scope="session")
def migrated_template(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url)
    upgrade(url)
    yield urls.database_name(url)
    drop_database(pg_server_url, url)


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A new, empty database (nothing migrated)."""
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture
def db_url(pg_server_url: str, migrated_template: str) -> Iterator[str]:
    """A new database at the newest migration, for this test alone."""
    url = create_database(pg_server_url, template=migrated_template)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database, acting as 'test'."""
    with connect(db_url, actor="test", autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def runbook_path() -> Path:
    """The operations runbook beside the repository (../shared/reference), if it is there."""
    path = REPO_ROOT.parent / "shared" / "reference" / "RUNBOOK.md"
    if not path.is_file():
        pytest.skip(f"no runbook at {path}")
    return path


# The Cloud API emulator (notify_pipeline.emulator) over real HTTP: emulator, webhook_receiver, graph.
from notify_pipeline_tests.support.emulator_fixtures import (  # noqa: E402
    emulator,  # noqa: F401
    emulator_server,  # noqa: F401
    graph,  # noqa: F401
    webhook_receiver,  # noqa: F401
)
