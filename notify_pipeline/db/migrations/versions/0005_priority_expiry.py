"""Priority and expiry: claim index by priority, notifications.expires_at, per-category default expiry.

Revision ID: 0005
Revises: 0004
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
