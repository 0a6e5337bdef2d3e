"""Receipts: webhook events stored and applied (statuses, inbound messages, user preferences), counters.

Revision ID: 0006
Revises: 0005
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
