"""Migrations on a real PostgreSQL: they build the schema the code describes, run twice without
change, survive two migrators at once, and fail with advice an operator can follow."""

from __future__ import annotations

import threading

import psycopg
import pytest

from notify_pipeline.db import urls
from notify_pipeline.db.migrate import MigrationError, head_revision, upgrade
from notify_pipeline_tests.support.ports import free_port

SCHEMA_SNAPSHOT = """
SELECT 'column', table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL SELECT 'index', indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL SELECT 'constraint', conname || ':' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL SELECT 'function', p.proname || ':' || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL SELECT 'trigger', tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'version', version_num FROM alembic_version
ORDER BY 1, 2
"""


def snapshot(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(SCHEMA_SNAPSHOT).fetchall()


def test_upgrade_builds_schema_then_second_run_changes_nothing(empty_db_url: str) -> None:
    first = upgrade(empty_db_url)
    assert first.before is None
    assert first.after == head_revision()
    assert first.changed
    before = snapshot(empty_db_url)
    second = upgrade(empty_db_url)
    assert not second.changed
    assert second.before == second.after == head_revision()
    assert snapshot(empty_db_url) == before


def test_two_migrators_at_once_both_succeed_and_migrate_once(empty_db_url: str) -> None:
    results, errors = [], []

    def run() -> None:
        try:
            results.append(upgrade(empty_db_url))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(result.changed for result in results) == [False, True]


def test_queue_tables_carry_queue_fit_autovacuum_settings(db: psycopg.Connection) -> None:
    options = db.execute("SELECT reloptions FROM pg_class WHERE relname = 'notifications'").fetchone()[0]
    assert "autovacuum_vacuum_scale_factor=0" in options
    assert "autovacuum_vacuum_cost_delay=0" in options


def test_unreachable_server_gives_one_line_of_advice(pg_server_url: str) -> None:
    url = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/notify"
    with pytest.raises(MigrationError) as caught:
        upgrade(url)
    message = str(caught.value)
    assert "cannot connect to the queue database" in message
    assert "NOTIFY_DATABASE_URL" in message
    assert "secret" not in message, "the password must not be printed"
    assert "\n" not in message


def test_missing_database_says_how_to_create_it(pg_server_url: str) -> None:
    url = urls.with_database(pg_server_url, "notify_no_such_database")
    with pytest.raises(MigrationError, match="createdb notify_no_such_database"):
        upgrade(url)


def test_foreign_schema_is_refused_without_damage(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE notifications (id uuid PRIMARY KEY, payload text)")
        conn.execute("INSERT INTO notifications VALUES (gen_random_uuid(), 'keep me')")
    with pytest.raises(MigrationError, match="did not create"):
        upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT payload FROM notifications").fetchall() == [("keep me",)]
        assert conn.execute("SELECT to_regclass('alembic_version')").fetchone()[0] is None


def test_database_from_a_newer_release_is_not_touched(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(MigrationError, match="newer release"):
        upgrade(db_url)
