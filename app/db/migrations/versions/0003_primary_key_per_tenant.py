"""PostgreSQL: primary key (tenant, seq) instead of (seq), so listings use their indexes.

With an index on `seq` alone, PostgreSQL's planner walked it newest first for most
listings and filtered rows on the way (its cost model favours an index that follows
the table's physical order), instead of the per-filter indexes of revision 0001:
fine for the biggest tenant's first page, but a page of a rare filter, of a small
tenant, or from a generic prepared-statement plan could read through much of the
table. Every listing is per tenant, so no query needs `seq` alone; keyed by
(tenant, seq) the planner picks the index made for each filter (measured in
bench/storage.py). The new key also serves what `ix_jobs_all` did, which goes.
`seq` stays unique: it comes from its sequence.

Building the key's index locks the table for writes for about a second per million
jobs. SQLite keeps `seq` as its rowid; its planner already used the right indexes.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_constraint("jobs_pkey", "jobs", type_="primary")
    op.create_primary_key("jobs_pkey", "jobs", ["tenant", "seq"])
    op.drop_index("ix_jobs_all", table_name="jobs")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index("ix_jobs_all", "jobs", ["tenant", "seq"])
    op.drop_constraint("jobs_pkey", "jobs", type_="primary")
    op.create_primary_key("jobs_pkey", "jobs", ["seq"])
