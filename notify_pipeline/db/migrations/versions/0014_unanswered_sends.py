"""Unanswered sends matched to their receipts: statuses name their notification, duplicates counted.

Revision ID: 0014
Revises: 0013
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
