"""Migrations are SQL files beside their Alembic revision: DDL and PL/pgSQL read best as SQL."""

from pathlib import Path

from alembic import op


def run_sql_file(revision_file: str) -> None:
    """Run the .sql file named like the revision module, as one script, through psycopg.

    The raw driver connection takes the script verbatim: no bind-parameter parsing of ':' or '%'
    inside PL/pgSQL bodies.
    """
    sql = Path(revision_file).with_suffix(".sql").read_text()
    op.get_bind().connection.driver_connection.execute(sql)
