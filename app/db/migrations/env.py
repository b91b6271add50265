"""Alembic environment: runs on the connection `app.db.migrate.migrate` hands over."""

from alembic import context

from app.db.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
