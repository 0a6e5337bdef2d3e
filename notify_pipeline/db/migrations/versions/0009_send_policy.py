"""Send policy: deferrals counted by cause, a late 131049 re-queued once, dedupe keys with a window,
template quality and the switch-off sync made.

Revision ID: 0009
Revises: 0008
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
