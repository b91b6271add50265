"""The data layer: tables, migrations, connecting, and the `databases` backends.

- `tables`: the jobs and idempotency_keys tables (SQLAlchemy Core) and `NEXT_CHANGE`.
- `migrate`: the one Alembic configuration and `migrate`; revisions in `migrations/`.
- `connect`: create and connect the `Database`, `check_reachable`, `DatabaseUnavailable`.
- `statements`: statements compiled once per shape, for both backends.
- `sqlite`, `postgres`: `databases`' backends with their per-call costs taken out.

What callers use is re-exported here (`from app import db`; `db.migrate`, `db.jobs`).
"""

from app.db.connect import (
    APPLICATION_NAME,
    Database,
    DatabaseUnavailable,
    check_reachable,
    connect,
    create_database,
)
from app.db.migrate import MIGRATIONS, alembic_config, migrate
from app.db.tables import NEXT_CHANGE, idempotency_keys, jobs, metadata

__all__ = [
    "APPLICATION_NAME",
    "MIGRATIONS",
    "NEXT_CHANGE",
    "Database",
    "DatabaseUnavailable",
    "alembic_config",
    "check_reachable",
    "connect",
    "create_database",
    "idempotency_keys",
    "jobs",
    "metadata",
    "migrate",
]
