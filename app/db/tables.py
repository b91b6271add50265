"""The tables (SQLAlchemy Core) and the change-number expression jobs' writes use.

Only migrations (app/db/migrations/) create or alter tables; this is what the
statements in app/jobs/store.py are built from.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    # Insertion order: newest-first listing pages on it (keyset, never OFFSET). The
    # primary key on SQLite (its rowid); on PostgreSQL the key is (tenant, seq), see
    # migration 0003. Only migrations create tables, so this need not say so.
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("status", sa.SmallInteger(), nullable=False),
    sa.Column("progress", sa.SmallInteger(), nullable=False),
    sa.Column("profile", sa.Uuid(), nullable=False),
    sa.Column("video", sa.Uuid(), nullable=False),
    # Ordered UUIDs in one column, one read: uuid[] on PostgreSQL (typed, 16 bytes each),
    # a JSON array of strings on SQLite (migration 0002).
    sa.Column(
        "inputs",
        sa.JSON().with_variant(postgresql.ARRAY(sa.Uuid()), "postgresql"),
        nullable=False,
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # Taken afresh by every change (NEXT_CHANGE): processes catch up on changes past the
    # last they saw (app.jobs.changes). Migration 0005.
    sa.Column("change_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
)

# A create's idempotency key, per tenant: the job it created and the request it came
# with (app.jobs.idempotency, app.jobs.keys.create_job_once). Migration 0006.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    # Batches of expired keys are deleted by it (app.jobs.sweeper).
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    # sha256 of the normalised request, hex (app.jobs.idempotency.fingerprint).
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("job_id", sa.Uuid(), nullable=False),
    # When the key was first used; it expires IDEMPOTENCY_KEY_TTL later.
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("tenant", "key", name="ux_idempotency_keys_tenant_key"),
)


class _NextChange(sa.sql.expression.ColumnElement[int]):
    """The next change number, taken in the statement that makes the change."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(_NextChange, "postgresql")
def _next_change_postgresql(element: _NextChange, compiler: Any, **kw: Any) -> str:
    # Numbers are taken in statement order but may commit out of it (by milliseconds):
    # app.jobs.changes reads PostgreSQL's changes once more a poll later.
    return "nextval('jobs_change_seq')"


@compiles(_NextChange, "sqlite")
def _next_change_sqlite(element: _NextChange, compiler: Any, **kw: Any) -> str:
    # SQLite runs one writer at a time, so the highest number so far plus one (an
    # index lookup) commits in order and never repeats: jobs are never removed, only
    # marked deleted, so the highest number is never given back.
    return "(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM jobs)"


NEXT_CHANGE = _NextChange()


# Webhooks (migration 0007): a tenant's receivers, the delivery outbox, each attempt.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    # The event types it wants, space-separated with a space either side (" job.created "),
    # so one LIKE finds the endpoints wanting a type on both engines.
    sa.Column("events", sa.Text(), nullable=False),
    # Sealed (app.webhooks.secrets); the previous one still signs until it expires.
    sa.Column("secret", sa.Text(), nullable=False),
    sa.Column("previous_secret", sa.Text(), nullable=True),
    sa.Column("previous_secret_until", _TIME, nullable=True),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("disabled_reason", sa.Text(), nullable=True),
    sa.Column("last_success_at", _TIME, nullable=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    # The `webhook-id` header: the same on every attempt of this delivery.
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("endpoint_id", sa.Uuid(), nullable=False),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("job_id", sa.Uuid(), nullable=False),
    # The exact body sent (and signed) on every attempt.
    sa.Column("payload", sa.Text(), nullable=False),
    # app.webhooks.model.DeliveryStatus: 0 pending, 1 delivered, 2 failed.
    sa.Column("status", sa.SmallInteger(), nullable=False),
    # Attempts of the current round (a redelivery starts a new one).
    sa.Column("attempts", sa.Integer(), nullable=False),
    # When it was first due (job.progress coalescing spaces these per job).
    sa.Column("due_at", _TIME, nullable=False),
    # When a deliverer may next claim it; a claim moves it a lease ahead.
    sa.Column("next_attempt_at", _TIME, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("delivered_at", _TIME, nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("delivery_seq", _SEQ, nullable=False),
    sa.Column("attempted_at", _TIME, nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration_ms", sa.Integer(), nullable=False),
)
