"""Create the jobs table and the indexes its listings need.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("progress", sa.SmallInteger(), nullable=False),
        sa.Column("profile", sa.Uuid(), nullable=False),
        sa.Column("video", sa.Uuid(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="ck_jobs_progress"),
        sa.CheckConstraint("status IN (0, 1, 10)", name="ck_jobs_status"),
    )
    op.create_index("ux_jobs_id", "jobs", ["id"], unique=True)
    # Newest first, deleted hidden: the default listing.
    op.create_index(
        "ix_jobs_live",
        "jobs",
        ["tenant", "seq"],
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    # includeDeleted listings and counts.
    op.create_index("ix_jobs_all", "jobs", ["tenant", "seq"])
    # One per filter; each keeps newest-first order inside the filter.
    op.create_index("ix_jobs_status", "jobs", ["tenant", "status", "seq"])
    op.create_index("ix_jobs_video", "jobs", ["tenant", "video", "seq"])
    op.create_index("ix_jobs_profile", "jobs", ["tenant", "profile", "seq"])


def downgrade() -> None:
    op.drop_table("jobs")
