"""A change number on each job, so every process can catch up on changes it missed.

`change_seq` is taken afresh by every change of a job (creation, report, deletion),
in the statement that makes the change: a PostgreSQL sequence, on SQLite the
highest number so far plus one (SQLite runs one writer at a time). Each process
asks, every CHANGE_POLL_INTERVAL, for the jobs whose number is past the last it
saw (app.jobs.changes), so a change whose publishing was lost (the process that
committed it died first) still reaches subscribers everywhere.

Existing rows are numbered in place: PostgreSQL rewrites the table once (seconds
per million jobs, writes wait meanwhile); SQLite copies `seq`.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE jobs_change_seq AS bigint")
        # A volatile default numbers every existing row as the column is added; new rows
        # take theirs from it too, updates set it explicitly (app.db.tables.NEXT_CHANGE).
        op.execute(
            "ALTER TABLE jobs ADD COLUMN change_seq bigint NOT NULL "
            "DEFAULT nextval('jobs_change_seq')"
        )
        op.execute("ALTER SEQUENCE jobs_change_seq OWNED BY jobs.change_seq")
    else:
        op.add_column(
            "jobs", sa.Column("change_seq", sa.Integer(), nullable=False, server_default="0")
        )
        op.execute("UPDATE jobs SET change_seq = seq")
    op.create_index("ix_jobs_change_seq", "jobs", ["change_seq"])


def downgrade() -> None:
    op.drop_index("ix_jobs_change_seq", table_name="jobs")
    op.drop_column("jobs", "change_seq")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS jobs_change_seq")
