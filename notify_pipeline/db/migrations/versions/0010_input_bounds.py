"""Input bounds: queueNotification refuses unassigned country codes, unbounded ids and send_at
outside its window; no phone number in the functions' error texts; Etc/GMT+N zones refused.

Revision ID: 0010
Revises: 0009
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
