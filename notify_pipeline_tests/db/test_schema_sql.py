"""db/schema.sql, where a reader finds the current tables, functions and triggers, is what the
migrations build: regenerated from a freshly migrated database, it must not change."""

from __future__ import annotations

import psycopg
import pytest

from notify_pipeline.db.migrate import upgrade
from notify_pipeline.db.schema_dump import REGENERATE, SCHEMA_SQL, SchemaDumpError, difference, dump

OBJECTS = """
SELECT 'CREATE TABLE public.' || relname || ' (' FROM pg_class
 WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relname <> 'alembic_version'
UNION ALL SELECT 'CREATE OR REPLACE FUNCTION public.' || proname || '(' FROM pg_proc
 WHERE pronamespace = 'public'::regnamespace
UNION ALL SELECT 'CREATE TRIGGER ' || tgname || ' ' FROM pg_trigger WHERE NOT tgisinternal
"""


def test_schema_sql_equals_a_freshly_migrated_database(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        migrated = dump(conn)
    committed = SCHEMA_SQL.read_text() if SCHEMA_SQL.exists() else ""
    if committed != migrated:
        pytest.fail(
            f"notify_pipeline/db/schema.sql differs from the migrated database; regenerate it: {REGENERATE}\n"
            + difference(committed, migrated),
            pytrace=False,
        )


def test_schema_sql_defines_every_table_function_and_trigger(db: psycopg.Connection) -> None:
    text = SCHEMA_SQL.read_text()
    definitions = [row[0] for row in db.execute(OBJECTS)]
    # Not vacuous: the product's entry point and one trigger are among them.
    assert "CREATE OR REPLACE FUNCTION public.queuenotification(" in definitions
    assert "CREATE TRIGGER notifications_before_write " in definitions
    assert [line for line in definitions if line not in text] == []


def test_dump_refuses_an_object_it_would_leave_out(db: psycopg.Connection) -> None:
    db.execute("CREATE VIEW queued_now AS SELECT id FROM notifications WHERE status = 'queued'")
    with pytest.raises(SchemaDumpError, match="relation queued_now of relkind v"):
        dump(db)
