"""Queue schema: notifications, contact preferences, templates, audit log, events, functions.

Revision ID: 0001
Revises:
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
