"""PostgreSQL: store inputs as uuid[] (was json), at most 100 and at least one.

A native array is typed (the database refuses anything but UUIDs), keeps order,
takes 16 bytes per input instead of a 38-byte string, and asyncpg decodes it to
UUIDs without a JSON parse. SQLite keeps its JSON array of strings: nothing to do.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # ALTER ... TYPE ... USING cannot hold a subquery; a session-local function can.
    op.execute(
        """
        CREATE FUNCTION pg_temp.json_to_uuids(value json) RETURNS uuid[]
        LANGUAGE sql IMMUTABLE AS $$
            SELECT array_agg(item::uuid ORDER BY position)
            FROM json_array_elements_text(value) WITH ORDINALITY AS t(item, position)
        $$
        """
    )
    op.execute(
        "ALTER TABLE jobs ALTER COLUMN inputs TYPE uuid[] USING pg_temp.json_to_uuids(inputs)"
    )
    op.execute("DROP FUNCTION pg_temp.json_to_uuids(json)")
    op.create_check_constraint("ck_jobs_inputs", "jobs", "cardinality(inputs) BETWEEN 1 AND 100")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_constraint("ck_jobs_inputs", "jobs", type_="check")
    op.execute("ALTER TABLE jobs ALTER COLUMN inputs TYPE json USING to_json(inputs)")
