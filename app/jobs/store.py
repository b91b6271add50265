"""Every SQL statement on jobs. Async functions taking the `Database`.

The state rules are applied here, atomically: a change is one conditional
`UPDATE … WHERE … RETURNING`, so concurrent workers can never move progress
backwards or revive a finished job, whichever of them the database runs first.

Every change commits in one transaction with the webhook deliveries it causes
(`_change`: the one place, for creation, reports and deletion alike), so a change
is never committed without them (app.webhooks.outbox).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from databases import Database

from app.db.tables import NEXT_CHANGE, jobs
from app.errors import InvalidTransition, JobNotFound
from app.jobs.model import (
    Job,
    JobChange,
    JobFilter,
    JobStatus,
    NewJob,
    Page,
    check_progress,
    utcnow,
)
from app.webhooks.model import EventType, event_for_report
from app.webhooks.outbox import Outbox


def job_from_row(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        tenant=row["tenant"],
        status=JobStatus(row["status"]),
        progress=row["progress"],
        profile=row["profile"],
        video=row["video"],
        # uuid[] on PostgreSQL arrives as UUIDs, SQLite's JSON array as strings. (On
        # PostgreSQL, `row._mapping` is asyncpg's raw record: no SQLAlchemy result
        # processing, so a column type needing it would arrive unconverted.)
        inputs=tuple(_as_uuid(value) for value in row["inputs"]),
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        deleted_at=_utc(row["deleted_at"]) if row["deleted_at"] is not None else None,
        seq=row["seq"],
    )


# Records deliveries with the default settings: for callers without the app's own
# (tools, tests of the store); the app passes its Outbox (app.main).
DEFAULT_OUTBOX = Outbox()


async def _change(
    db: Database,
    tenant: str,
    statement: Any,
    outbox: Outbox,
    event: EventType,
) -> Job | None:
    """Run a change (a statement returning the changed row) and record the webhook
    deliveries it causes, in one transaction; None if the statement changed nothing.
    Without an endpoint concerned by `event` no transaction is needed (one read)."""
    wanting = outbox.concerned(await outbox.endpoints(db, tenant), event)
    if not wanting:
        row = await db.fetch_one(statement)
        return job_from_row(row._mapping) if row is not None else None
    async with db.transaction():
        row = await db.fetch_one(statement)
        if row is None:
            return None
        job = job_from_row(row._mapping)
        recorded = await outbox.record(db, job, event, wanting)
    if recorded:
        outbox.recorded()
    return job


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; we only ever store UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The time a statement runs, taken as it runs (one value wherever it appears in it).
_NOW = sa.bindparam("now", type_=sa.DateTime(timezone=True), callable_=utcnow)
# `_NOW`, or the stored updated_at if that is later: it never goes backwards, even
# when two writers' clocks (or two requests of one process) race. A constant
# expression, so lambda statements can hold it.
_LATER_NOW = sa.case((jobs.c.updated_at > _NOW, jobs.c.updated_at), else_=_NOW)


def _filtered(
    query: sa.StatementLambdaElement, tenant: str, job_filter: JobFilter
) -> sa.StatementLambdaElement:
    """`query` narrowed to the tenant's jobs that match the filter.

    Reads are lambda statements: SQLAlchemy builds each shape once and then only
    takes the new values from the lambdas' closures, ~4x cheaper than building the
    statement on every call (app/db/statements.py keeps the compiled SQL).
    """
    query += lambda q: q.where(jobs.c.tenant == tenant)
    if not job_filter.include_deleted:
        query += lambda q: q.where(jobs.c.deleted_at.is_(None))
    if job_filter.status is not None:
        status = int(job_filter.status)
        query += lambda q: q.where(jobs.c.status == status)
    if job_filter.video is not None:
        video = job_filter.video
        query += lambda q: q.where(jobs.c.video == video)
    if job_filter.profile is not None:
        profile = job_filter.profile
        query += lambda q: q.where(jobs.c.profile == profile)
    return query


# Status codes as lambda statements take them (plain ints, bound as parameters).
_IN_PROGRESS, _COMPLETED, _FAILED = (
    int(JobStatus.IN_PROGRESS),
    int(JobStatus.COMPLETED),
    int(JobStatus.FAILED),
)


async def create_job(
    db: Database, tenant: str, new: NewJob, outbox: Outbox = DEFAULT_OUTBOX
) -> Job:
    insert = insert_job(tenant, new, uuid.uuid4(), utcnow())
    job = await _change(db, tenant, insert, outbox, EventType.JOB_CREATED)
    assert job is not None
    return job


def insert_job(
    tenant: str, new: NewJob, job_id: uuid.UUID, now: datetime
) -> sa.StatementLambdaElement:
    """The insert of a new job, returning its row."""
    profile, video = new.profile, new.video
    inputs = [str(value) for value in new.inputs]
    # Built and keyed once (a lambda statement), not per call.
    return sa.lambda_stmt(
        lambda: (
            jobs.insert()
            .values(
                id=job_id,
                tenant=tenant,
                status=_IN_PROGRESS,
                progress=0,
                profile=profile,
                video=video,
                inputs=inputs,
                created_at=now,
                updated_at=now,
                deleted_at=None,
                change_seq=NEXT_CHANGE,
            )
            .returning(*jobs.c)
        )
    )


async def get_job(db: Database, tenant: str, job_id: uuid.UUID) -> Job | None:
    row = await db.fetch_one(
        sa.lambda_stmt(
            lambda: sa.select(*jobs.c).where(jobs.c.id == job_id, jobs.c.tenant == tenant)
        )
    )
    return job_from_row(row._mapping) if row is not None else None


async def list_jobs(
    db: Database, tenant: str, job_filter: JobFilter, first: int, after: int | None = None
) -> Page:
    """Newest first; `after` is the `seq` of the last job of the previous page."""
    rows = await db.fetch_all(list_query(tenant, job_filter, first + 1, after))
    found = [job_from_row(row._mapping) for row in rows]
    return Page(jobs=found[:first], has_next=len(found) > first)


def list_query(
    tenant: str, job_filter: JobFilter, limit: int, after: int | None
) -> sa.StatementLambdaElement:
    """Keyset pagination: an index range scan whatever the page's depth."""
    query = _filtered(sa.lambda_stmt(lambda: sa.select(*jobs.c)), tenant, job_filter)
    if after is not None:
        query += lambda q: q.where(jobs.c.seq < after)
    query += lambda q: q.order_by(jobs.c.seq.desc()).limit(limit)
    return query


async def count_jobs(db: Database, tenant: str, job_filter: JobFilter) -> int:
    value = await db.fetch_val(
        _filtered(
            sa.lambda_stmt(lambda: sa.select(sa.func.count()).select_from(jobs)),
            tenant,
            job_filter,
        )
    )
    return int(value)


async def delete_job(
    db: Database, tenant: str, job_id: uuid.UUID, outbox: Outbox = DEFAULT_OUTBOX
) -> Job:
    """Soft delete; deleting again returns the job unchanged (and sends no webhook)."""
    deleted = await _change(
        db,
        tenant,
        jobs.update()
        .where(jobs.c.id == job_id, jobs.c.tenant == tenant, jobs.c.deleted_at.is_(None))
        .values(deleted_at=_NOW, updated_at=_LATER_NOW, change_seq=NEXT_CHANGE)
        .returning(*jobs.c),
        outbox,
        EventType.JOB_DELETED,
    )
    if deleted is not None:
        return deleted
    job = await get_job(db, tenant, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def update_progress(
    db: Database,
    tenant: str,
    job_id: uuid.UUID,
    progress: int | None,
    status: JobStatus | None = None,
    outbox: Outbox = DEFAULT_OUTBOX,
) -> Job:
    """Report progress and/or a final status, under the contract's state rules.

    Only an IN_PROGRESS, not deleted job changes; progress never goes down;
    COMPLETED sets progress to 100; FAILED keeps the progress reached.
    """
    check_progress(progress)
    # A lambda statement per shape (progress sent or not, which final status): built
    # and keyed once, not per report (~30% of a report's time in SQLAlchemy otherwise).
    # Each shape sets its values in one call: a lambda statement takes one.
    update = sa.lambda_stmt(
        lambda: (
            jobs.update()
            .where(
                jobs.c.id == job_id,
                jobs.c.tenant == tenant,
                jobs.c.status == _IN_PROGRESS,
                jobs.c.deleted_at.is_(None),
            )
            .returning(*jobs.c)
        )
    )
    if progress is not None:
        update += lambda u: u.where(jobs.c.progress <= progress)
    if status is JobStatus.COMPLETED:
        update += lambda u: u.values(
            updated_at=_LATER_NOW, change_seq=NEXT_CHANGE, status=_COMPLETED, progress=100
        )
    elif status is JobStatus.FAILED and progress is not None:
        update += lambda u: u.values(
            updated_at=_LATER_NOW, change_seq=NEXT_CHANGE, status=_FAILED, progress=progress
        )
    elif status is JobStatus.FAILED:
        update += lambda u: u.values(updated_at=_LATER_NOW, change_seq=NEXT_CHANGE, status=_FAILED)
    elif progress is not None:  # IN_PROGRESS or no status: the status stays
        update += lambda u: u.values(
            updated_at=_LATER_NOW, change_seq=NEXT_CHANGE, progress=progress
        )
    else:
        update += lambda u: u.values(updated_at=_LATER_NOW, change_seq=NEXT_CHANGE)
    changed = await _change(db, tenant, update, outbox, event_for_report(status))
    if changed is not None:
        return changed
    raise await _why_unchanged(db, tenant, job_id, progress)


async def _why_unchanged(
    db: Database, tenant: str, job_id: uuid.UUID, progress: int | None
) -> Exception:
    job = await get_job(db, tenant, job_id)
    if job is None:
        return JobNotFound(job_id)
    if job.deleted_at is not None:
        return InvalidTransition(f"job {job_id} is deleted and can no longer change")
    if job.status.is_terminal:
        return InvalidTransition(
            f"job {job_id} is already {job.status.name} and can no longer change"
        )
    if progress is not None and progress < job.progress:
        return InvalidTransition(
            f"progress: {progress} is lower than the job's current progress {job.progress}"
        )
    return InvalidTransition(f"job {job_id} changed concurrently; read it and try again")


async def jobs_by_id(db: Database, job_ids: Collection[uuid.UUID]) -> list[Job]:
    """Jobs by id, whatever their tenant: catching subscribers up after a broker outage
    (each event carries its tenant, and is only ever given to that tenant's subscribers)."""
    # One statement per id (a cached one) rather than an `IN` list: this runs once per
    # outage, and an `IN` list is compiled afresh every time (app/db/statements.py).
    found: list[Job] = []
    for job_id in job_ids:
        row = await db.fetch_one(sa.select(*jobs.c).where(jobs.c.id == job_id))
        if row is not None:
            found.append(job_from_row(row._mapping))
    return found


async def changed_since(db: Database, tenant: str, since: datetime, limit: int) -> list[Job]:
    """The tenant's jobs (deleted ones too) updated at or after `since`, oldest change first."""
    rows = await db.fetch_all(
        sa.select(*jobs.c)
        .where(jobs.c.tenant == tenant, jobs.c.updated_at >= since)
        .order_by(jobs.c.updated_at, jobs.c.seq)
        .limit(limit)
    )
    return [job_from_row(row._mapping) for row in rows]


# What a process needs to tell whether it has passed a change on: no inputs, no UUIDs
# of profile or video (a poll reads every job changed since the last).
_CHANGE_COLUMNS = (
    jobs.c.id,
    jobs.c.tenant,
    jobs.c.change_seq,
    jobs.c.updated_at,
    jobs.c.deleted_at,
    jobs.c.status,
    jobs.c.progress,
)


async def changes_after(db: Database, after: int, limit: int) -> list[JobChange]:
    """Jobs whose latest change is numbered past `after`, in change order (any tenant)."""
    rows = await db.fetch_all(
        sa.lambda_stmt(
            lambda: (
                sa.select(*_CHANGE_COLUMNS)
                .where(jobs.c.change_seq > after)
                .order_by(jobs.c.change_seq)
                .limit(limit)
            )
        )
    )
    return [
        JobChange(
            id=_as_uuid(row["id"]),
            tenant=row["tenant"],
            seq=row["change_seq"],
            key=(
                _utc(row["updated_at"]),
                row["deleted_at"] is not None,
                JobStatus(row["status"]).is_terminal,
                row["progress"],
            ),
        )
        for row in (row._mapping for row in rows)
    ]


async def last_change(db: Database) -> int:
    """The number of the latest change so far (0 with none)."""
    value = await db.fetch_val(
        sa.lambda_stmt(lambda: sa.select(sa.func.coalesce(sa.func.max(jobs.c.change_seq), 0)))
    )
    return int(value)


async def count_by_status(db: Database) -> dict[JobStatus, int]:
    """How many jobs (every tenant's, deleted ones too) have each status: the
    `jobs_gateway_jobs` gauge (app/metrics.py). At a million jobs this reads an index
    of the whole table (docs/operations.md#metrics has the times), so callers cache it."""
    rows = await db.fetch_all(
        sa.lambda_stmt(lambda: sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status))
    )
    found = dict.fromkeys(JobStatus, 0)
    for row in rows:
        found[JobStatus(row[0])] = int(row[1])
    return found
