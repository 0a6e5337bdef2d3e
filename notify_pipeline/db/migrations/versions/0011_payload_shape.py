"""Payload shapes: queueNotification validates Meta's template components (types, parameter lists, sizes, nesting), and a delay given in scientific notation that underflows is refused as 22023.

Revision ID: 0011
Revises: 0010
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
