"""Reporting and alerting: daily summary tables, alert episodes.

Revision ID: 0003
Revises: 0002
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
