"""Counters with bounded labels: opt-out reasons folded into a fixed set of causes, counts kept.

Revision ID: 0012
Revises: 0011
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
