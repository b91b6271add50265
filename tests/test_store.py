"""Every store function, on each engine: what goes in comes back the same.

Runs on SQLite and (with TEST_POSTGRES_URL) on PostgreSQL, where inputs are a uuid[],
ids native uuids and timestamps timestamptz, behind the same functions.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest
from databases import Database

from app.errors import InvalidTransition, JobNotFound
from app.jobs import store
from app.jobs.model import Job, JobFilter, JobStatus, NewJob, new_job

pytestmark = pytest.mark.anyio
TENANT = "acme"


def a_new_job(inputs: int = 1, video: uuid.UUID | None = None) -> NewJob:
    return new_job([uuid.uuid4() for _ in range(inputs)], uuid.uuid4(), video or uuid.uuid4())


async def test_create_returns_what_get_reads(database: Database) -> None:
    new = a_new_job(inputs=100)
    before = datetime.now(UTC)
    created = await store.create_job(database, TENANT, new)
    after = datetime.now(UTC)

    assert created.inputs == new.inputs  # all 100, in the order given
    assert (created.profile, created.video) == (new.profile, new.video)
    assert (created.status, created.progress, created.deleted_at) == (
        JobStatus.IN_PROGRESS,
        0,
        None,
    )
    # UTC, with microseconds: a value rounded to the second would fall outside.
    assert created.created_at.utcoffset() is not None
    assert created.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= created.created_at <= after
    assert created.updated_at == created.created_at
    assert await store.get_job(database, TENANT, created.id) == created


async def test_inputs_keep_their_order_whatever_it_is(database: Database) -> None:
    values = sorted(uuid.uuid4() for _ in range(30))
    random.Random(5).shuffle(values)
    created = await store.create_job(database, TENANT, new_job(values, uuid.uuid4(), uuid.uuid4()))
    assert list((await store.get_job(database, TENANT, created.id)).inputs) == values  # type: ignore[union-attr]


async def test_get_is_scoped_to_the_tenant(database: Database) -> None:
    created = await store.create_job(database, TENANT, a_new_job())
    assert await store.get_job(database, "other", created.id) is None
    assert await store.get_job(database, TENANT, uuid.uuid4()) is None


async def test_list_walks_every_job_newest_first_by_cursor(database: Database) -> None:
    created = [await store.create_job(database, TENANT, a_new_job()) for _ in range(7)]
    await store.create_job(database, "other", a_new_job())
    seen: list[Job] = []
    after = None
    while True:
        page = await store.list_jobs(database, TENANT, JobFilter(), first=3, after=after)
        seen.extend(page.jobs)
        if not page.has_next:
            break
        after = page.jobs[-1].seq
    assert [job.id for job in seen] == [job.id for job in reversed(created)]
    assert seen == list(reversed(created))


async def test_list_and_count_apply_each_filter(database: Database) -> None:
    video = uuid.uuid4()
    jobs = [await store.create_job(database, TENANT, a_new_job(video=video)) for _ in range(3)]
    other = await store.create_job(database, TENANT, a_new_job())
    await store.update_progress(database, TENANT, jobs[0].id, None, JobStatus.COMPLETED)
    await store.update_progress(database, TENANT, jobs[1].id, 30, JobStatus.FAILED)
    await store.delete_job(database, TENANT, jobs[2].id)

    expectations = {
        JobFilter(): [other.id, jobs[1].id, jobs[0].id],
        JobFilter(include_deleted=True): [other.id, jobs[2].id, jobs[1].id, jobs[0].id],
        JobFilter(status=JobStatus.COMPLETED): [jobs[0].id],
        JobFilter(status=JobStatus.FAILED): [jobs[1].id],
        JobFilter(status=JobStatus.IN_PROGRESS): [other.id],
        JobFilter(status=JobStatus.IN_PROGRESS, include_deleted=True): [other.id, jobs[2].id],
        JobFilter(video=video): [jobs[1].id, jobs[0].id],
        JobFilter(profile=other.profile): [other.id],
        JobFilter(profile=other.profile, video=video): [],
    }
    for job_filter, ids in expectations.items():
        page = await store.list_jobs(database, TENANT, job_filter, first=10)
        assert [job.id for job in page.jobs] == ids, job_filter
        assert await store.count_jobs(database, TENANT, job_filter) == len(ids), job_filter
    assert await store.count_jobs(database, "other", JobFilter(include_deleted=True)) == 0


async def test_delete_is_soft_and_idempotent(database: Database) -> None:
    created = await store.create_job(database, TENANT, a_new_job())
    deleted = await store.delete_job(database, TENANT, created.id)
    assert deleted.deleted_at is not None
    assert deleted.updated_at == deleted.deleted_at >= created.updated_at
    assert await store.delete_job(database, TENANT, created.id) == deleted
    assert await store.get_job(database, TENANT, created.id) == deleted
    with pytest.raises(JobNotFound):
        await store.delete_job(database, "other", created.id)
    with pytest.raises(JobNotFound):
        await store.delete_job(database, TENANT, uuid.uuid4())


async def test_update_progress_keeps_the_state_rules(database: Database) -> None:
    job = await store.create_job(database, TENANT, a_new_job())
    moved = await store.update_progress(database, TENANT, job.id, 40)
    assert (moved.progress, moved.status) == (40, JobStatus.IN_PROGRESS)
    assert moved.updated_at > job.updated_at
    with pytest.raises(InvalidTransition, match="lower"):
        await store.update_progress(database, TENANT, job.id, 39)
    done = await store.update_progress(database, TENANT, job.id, None, JobStatus.COMPLETED)
    assert (done.progress, done.status) == (100, JobStatus.COMPLETED)
    # Each report is stamped with its own time, not the first one's.
    assert done.updated_at > moved.updated_at
    with pytest.raises(InvalidTransition, match="COMPLETED"):
        await store.update_progress(database, TENANT, job.id, 100)
    with pytest.raises(JobNotFound):
        await store.update_progress(database, "other", job.id, 50)

    failing = await store.create_job(database, TENANT, a_new_job())
    failed = await store.update_progress(database, TENANT, failing.id, 30, JobStatus.FAILED)
    assert (failed.progress, failed.status) == (30, JobStatus.FAILED)
    gone = await store.create_job(database, TENANT, a_new_job())
    await store.delete_job(database, TENANT, gone.id)
    with pytest.raises(InvalidTransition, match="deleted"):
        await store.update_progress(database, TENANT, gone.id, 10)


async def test_concurrent_updates_through_one_pool_never_go_backwards(database: Database) -> None:
    # On PostgreSQL these run on several pooled connections at once.
    job = await store.create_job(database, TENANT, a_new_job())
    values = list(range(0, 100))
    random.Random(3).shuffle(values)

    async def report(progress: int) -> int | None:
        try:
            return (await store.update_progress(database, TENANT, job.id, progress)).progress
        except InvalidTransition:
            return None

    accepted = [value for value in await asyncio.gather(*map(report, values)) if value is not None]
    final = await store.get_job(database, TENANT, job.id)
    assert final is not None
    assert final.progress == max(accepted) == 99
    assert 99 in accepted


async def test_every_uuid_comes_back_as_a_uuid(database: Database) -> None:
    # What GraphQL and REST rely on, on each engine: a uuid.UUID (asyncpg's own class is
    # a subclass), never the string SQLite's JSON array holds.
    first = await store.create_job(database, TENANT, a_new_job(inputs=3))
    second = await store.create_job(database, TENANT, a_new_job(inputs=2))
    jobs = [
        first,
        await store.get_job(database, TENANT, first.id),
        *(await store.list_jobs(database, TENANT, JobFilter(), 10)).jobs,
        await store.update_progress(database, TENANT, first.id, 10),
        await store.delete_job(database, TENANT, second.id),
        *await store.jobs_by_id(database, [first.id, second.id]),
        *await store.changed_since(database, TENANT, first.created_at, 10),
    ]
    for job in jobs:
        assert job is not None
        values = [job.id, job.profile, job.video, *job.inputs]
        assert all(isinstance(value, uuid.UUID) for value in values), job
    changes = await store.changes_after(database, 0, 10)
    assert {change.id for change in changes} == {first.id, second.id}
    assert all(isinstance(change.id, uuid.UUID) for change in changes)
