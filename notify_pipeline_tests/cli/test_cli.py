"""The `notify-pipeline` console script, run as a user runs it: a separate process."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from notify_pipeline.db import urls
from notify_pipeline.db.migrate import head_revision
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.ports import free_port


def test_db_upgrade_then_again_is_a_no_op(empty_db_url: str) -> None:
    first = cli("db", "upgrade", env={"NOTIFY_DATABASE_URL": empty_db_url})
    assert first.returncode == 0, first.stderr
    assert f"to {head_revision()}" in first.stdout
    second = cli("db", "upgrade", env={"NOTIFY_DATABASE_URL": empty_db_url})
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]


def test_db_upgrade_against_unreachable_server_fails_with_one_clear_line() -> None:
    url = f"postgresql://notify:hunter2@127.0.0.1:{free_port()}/notify"
    result = cli("db", "upgrade", env={"NOTIFY_DATABASE_URL": url})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("notify-pipeline: cannot connect to the queue database")
    assert "NOTIFY_DATABASE_URL" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/notify", "is not a PostgreSQL URL"),
        ("not a url at all", "is not a database URL"),
        ("postgresql://localhost:5432/", "names no database"),
    ],
)
def test_db_upgrade_with_a_malformed_url_says_what_to_fix(url: str, expected: str) -> None:
    result = cli("db", "upgrade", env={"NOTIFY_DATABASE_URL": url})
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_db_url_prints_the_configured_url_in_libpq_form(db_url: str) -> None:
    sqlalchemy_form = urls.for_driver(db_url, "psycopg")
    result = cli("db", "url", "--show-password", env={"NOTIFY_DATABASE_URL": sqlalchemy_form})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == db_url


def test_db_url_masks_the_password_unless_asked() -> None:
    url = "postgresql://notify:s3cret-Pa55@db.example:5432/notify"
    masked = cli("db", "url", env={"NOTIFY_DATABASE_URL": url})
    assert masked.returncode == 0, masked.stderr
    assert masked.stdout.strip() == "postgresql://notify:***@db.example:5432/notify"
    shown = cli("db", "url", "--show-password", env={"NOTIFY_DATABASE_URL": url})
    assert shown.stdout.strip() == url


def test_db_url_starts_the_embedded_server_when_none_is_configured(tmp_path: Path) -> None:
    env = {
        "NOTIFY_DATABASE_URL": "",
        "NOTIFY_DATA_DIR": str(tmp_path),
        "NOTIFY_EMBEDDED_PG_PORT": str(free_port()),
    }
    try:
        first = cli("db", "url", "--show-password", env=env)
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()
        assert url.startswith("postgresql://postgres:")
        assert "@127.0.0.1:" in url
        assert url.endswith("/notify")
        again = cli("db", "url", "--show-password", env=env).stdout.strip()
        assert again == url, "the second command reuses the server"
        assert cli("db", "url", env=env).stdout.strip() == urls.mask(url), "masked without --show-password"
        upgraded = cli("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW server_version_num").fetchone()[0] >= "180000"
            assert conn.execute("SELECT count(*) FROM notifications").fetchone()[0] == 0
    finally:
        stopped = cli("db", "stop", env=env)
    assert "stopped" in stopped.stdout


@pytest.mark.parametrize("command", [[], ["db"], ["db", "upgrade"], ["db", "url"], ["db", "stop"], ["dev"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0
    assert "Usage: notify-pipeline" in result.stdout
