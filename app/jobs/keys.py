"""The SQL of idempotency keys: a create that holds its key (`create_job_once`), and
the sweep of expired keys (`forget_keys`). The key rules are app.jobs.idempotency's;
the job's insert and its webhook deliveries are app.jobs.store's, run here in the
key's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from databases import Database
from sqlalchemy.dialects import postgresql, sqlite

from app.db.tables import idempotency_keys, jobs
from app.errors import IdempotencyKeyReused
from app.jobs import store
from app.jobs.idempotency import IdempotencyKey
from app.jobs.model import Created, NewJob, utcnow
from app.webhooks.model import EventType
from app.webhooks.outbox import Outbox


async def create_job_once(
    db: Database,
    tenant: str,
    new: NewJob,
    key: IdempotencyKey,
    ttl: timedelta,
    outbox: Outbox = store.DEFAULT_OUTBOX,
) -> Created:
    """Create the job unless `key` already created one within `ttl`: then that job,
    as it was created, and nothing stored; CONFLICT if it came with another request.

    The key is claimed and the job inserted in one transaction. Concurrent claims of
    one key meet at the unique (tenant, key) constraint: on PostgreSQL the later ones
    wait for the first's commit and then find its key; SQLite runs one writer at a
    time. An expired key is taken over in the same statement, as if it were new. The
    webhook deliveries a new job causes are recorded in that transaction too (`_change`).
    """
    job_id, now = uuid.uuid4(), utcnow()
    wanting = outbox.concerned(await outbox.endpoints(db, tenant), EventType.JOB_CREATED)
    async with db.transaction():
        claimed = await db.fetch_one(_claim(db.url.dialect, tenant, key, job_id, now, now - ttl))
        if claimed is not None:
            inserted = await db.fetch_one(store.insert_job(tenant, new, job_id, now))
            assert inserted is not None
            job = store.job_from_row(inserted._mapping)
            recorded = bool(wanting) and await outbox.record(
                db, job, EventType.JOB_CREATED, wanting
            )
        else:
            # Not claimed: the key is held, unexpired (and locked by the claim, on PostgreSQL).
            row = await db.fetch_one(
                sa.select(idempotency_keys.c.fingerprint, *jobs.c)
                .join(jobs, jobs.c.id == idempotency_keys.c.job_id)
                .where(idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == key.key)
            )
    if claimed is not None:
        if recorded:
            outbox.recorded()
        return Created(job, replayed=False)
    if row is None:
        raise RuntimeError(f"idempotency key {key.key!r} of tenant {tenant!r} names no job")
    if row._mapping["fingerprint"] != key.fingerprint:
        raise IdempotencyKeyReused(
            f"idempotency key {key.key!r} was already used with a different request "
            f"(job {row._mapping['id']}); use a new key for a new job"
        )
    return Created(store.job_from_row(row._mapping).as_created(), replayed=True)


def _claim(
    dialect: str,
    tenant: str,
    key: IdempotencyKey,
    job_id: uuid.UUID,
    now: datetime,
    expired_before: datetime,
) -> sa.Insert:
    """Insert the key, or take it over if it expired; returns a row if it did either."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(idempotency_keys).values(
        tenant=tenant, key=key.key, fingerprint=key.fingerprint, job_id=job_id, created_at=now
    )
    return statement.on_conflict_do_update(
        index_elements=[idempotency_keys.c.tenant, idempotency_keys.c.key],
        set_={
            "fingerprint": statement.excluded.fingerprint,
            "job_id": statement.excluded.job_id,
            "created_at": statement.excluded.created_at,
        },
        where=idempotency_keys.c.created_at <= expired_before,
    ).returning(idempotency_keys.c.job_id)


async def forget_keys(db: Database, expired_before: datetime, limit: int) -> int:
    """Delete at most `limit` keys first used before `expired_before`; how many went.

    One short statement per batch, so no lock is held for long however many expired.
    On PostgreSQL keys being claimed right now (locked) are skipped, not waited for.
    """
    batch = (
        sa.select(idempotency_keys.c.seq)
        .where(idempotency_keys.c.created_at <= expired_before)
        .limit(limit)
    )
    if db.url.dialect == "postgresql":
        batch = batch.with_for_update(skip_locked=True)
    rows = await db.fetch_all(
        idempotency_keys.delete()
        .where(idempotency_keys.c.seq.in_(batch.scalar_subquery()))
        .returning(idempotency_keys.c.seq)
    )
    return len(rows)
