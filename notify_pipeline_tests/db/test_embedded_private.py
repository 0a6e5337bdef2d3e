"""The embedded PostgreSQL is private: a generated password (SCRAM) in a 0600 file, pg_hba.conf
admitting that one user from 127.0.0.1 only, a 0600 log without statement text; a folder made by an
older version (trust, no password) is upgraded in place; `db stop` then `db url` works at once."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from notify_pipeline.db import embedded, urls
from notify_pipeline.db.embedded import EmbeddedPostgres
from notify_pipeline_tests.support.ports import free_port

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "notify-pipeline")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def without_password(url: str) -> str:
    password = urls.parse(url).password
    assert password, url
    return url.replace(f":{password}@", "@")


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """NOTIFY_DATA_DIR of a server of this module's own (the CLI finds it under postgres/)."""
    root = Path(tempfile.mkdtemp(prefix="notify-private-pg-"))
    server = EmbeddedPostgres(root / "postgres")
    server.ensure_running(port=free_port())
    try:
        yield root
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(data_dir: Path) -> EmbeddedPostgres:
    server = EmbeddedPostgres(data_dir / "postgres")
    server.ensure_running()
    return server


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NOTIFY_DATABASE_URL": "", "NOTIFY_DATA_DIR": str(data_dir)}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_password_is_generated_and_kept_in_a_file_only_its_owner_reads(server: EmbeddedPostgres) -> None:
    password = server.password()
    assert password and len(password) >= 24
    assert mode(server.password_file) == 0o600
    assert mode(server.logfile) == 0o600
    assert f":{password}@127.0.0.1:" in server.url()
    with psycopg.connect(server.url()) as conn:
        verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()[0]
        assert verifier.startswith("SCRAM-SHA-256$")
        assert conn.execute("SHOW log_min_error_statement").fetchone()[0] == "panic"
        assert conn.execute("SHOW log_error_verbosity").fetchone()[0] == "terse"
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"


def test_pg_hba_admits_the_one_user_with_its_password_from_127_0_0_1_only(server: EmbeddedPostgres) -> None:
    rules = [
        line.split()
        for line in (server.pgdata / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules == [["host", "all", "postgres", "127.0.0.1/32", "scram-sha-256"]]
    assert "trust" not in (server.pgdata / "pg_hba.conf").read_text().replace("No trust", "")


def test_a_connection_without_the_password_is_refused(server: EmbeddedPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(without_password(server.url()), connect_timeout=5)
    wrong = urls.parse(server.url()).set(password="not-the-password").render_as_string(hide_password=False)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    other_user = urls.parse(server.url()).set(username="replicator").render_as_string(hide_password=False)
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry|password authentication"):
        psycopg.connect(other_user, connect_timeout=5)


def test_db_stop_then_db_url_works_at_once(data_dir: Path, server: EmbeddedPostgres) -> None:
    # Connections first, so the stopped server leaves sockets in TIME-WAIT on its port.
    for _ in range(3):
        with psycopg.connect(server.url()) as conn:
            conn.execute("SELECT 1")
    stopped = cli(data_dir, "db", "stop")
    assert "stopped" in stopped.stdout, stopped.stderr
    again = cli(data_dir, "db", "url")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == urls.mask(server.url("notify"))
    assert server.password() not in again.stdout + again.stderr
    shown = cli(data_dir, "db", "url", "--show-password")
    assert shown.stdout.strip() == server.url("notify")


def test_the_port_probe_ignores_time_wait_but_sees_a_listener() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    assert not embedded._port_is_free(port), "a listening port is taken"
    accepted.close()  # the server side closes first: its end of the connection enters TIME-WAIT
    listener.close()
    client.close()
    assert embedded._port_is_free(port), "TIME-WAIT sockets of a stopped server do not hold the port"


def test_a_data_folder_of_an_older_version_is_upgraded_in_place(tmp_path: Path, capfd) -> None:
    """As the previous version made it: initdb --auth=trust, no password file, a world-readable log."""
    server = EmbeddedPostgres(tmp_path / "postgres")
    server.root.mkdir()
    pg, _ = embedded._pg_commands()
    server.pgdata.mkdir()
    user = server._prepare_permissions()
    pg.initdb(
        ["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-U", "postgres"],
        pgdata=server.pgdata,
        user=user,
    )
    with open(server.pgdata / "postgresql.auto.conf", "a") as conf:
        settings = {**embedded.SERVER_SETTINGS, "port": str(free_port())}
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    server.logfile.write_text("old log\n")
    server.logfile.chmod(0o644)
    try:
        server._start()  # the old version left it running
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        assert server.password() is None

        url = server.ensure_running()
        assert "was made private" in capfd.readouterr().err
        password = server.password()
        assert password and mode(server.password_file) == 0o600 and mode(server.logfile) == 0o600
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,), "the data is kept"
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(without_password(url), connect_timeout=5)

        server.stop()
        assert server.ensure_running() == url, "after a restart: the same password, still private"
        assert "was made private" not in capfd.readouterr().err
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(without_password(url), connect_timeout=5)
    finally:
        server.stop()
