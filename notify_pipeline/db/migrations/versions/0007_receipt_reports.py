"""Receipt reports: delivered, read and late-failed counts, rates and delivery latency per day and domain.

Revision ID: 0007
Revises: 0006
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
