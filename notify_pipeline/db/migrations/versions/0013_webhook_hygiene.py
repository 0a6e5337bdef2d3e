"""Webhook hygiene: webhook_events retention and a fair retry of statuses waiting for their message id.

Revision ID: 0013
Revises: 0012
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
