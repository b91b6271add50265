"""An index for listings filtered by profile and status together.

Each single filter has its index (revision 0001), and a video has a handful of
jobs, so combinations with `video` stay cheap. Profile and status together did
not: the listing walked one profile's jobs (a twentieth of a tenant's, say) to
find a page of, e.g., FAILED ones, reading each row to test its status; the
rarer the match, the more rows, and with none at all, every job of the profile.
Measured with bench/storage.py data (10,000 vs 1,000,000 jobs, the SQL alone): a
page of FAILED jobs of one profile took 0.24 vs 1.44 ms on SQLite; with none to
find, 0.27 vs 166 ms on SQLite and 186 ms at 1M on PostgreSQL. With this index
both engines read exactly the page: 0.1 ms, and 0.01-0.07 ms for an empty one, at
either size. Progress reports do not touch it (only a status change does).
Building it takes seconds per million jobs, during which writes wait.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_profile_status", "jobs", ["tenant", "profile", "status", "seq"])


def downgrade() -> None:
    op.drop_index("ix_jobs_profile_status", table_name="jobs")
