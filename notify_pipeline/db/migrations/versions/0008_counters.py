"""Counters that only go up and histograms with stored buckets, kept with each outcome.

Revision ID: 0008
Revises: 0007
"""

from notify_pipeline.db.migrations.sqlfile import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)
