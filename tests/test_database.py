"""app.db.sqlite, app.db.postgres: `databases` with pooled SQLite connections and compiled statements kept.

What must not change for the store: every call binds its own values to a statement
compiled once, each task keeps its own connection and transaction, and a burst of
writes from one process all succeed. On SQLite always, on PostgreSQL with
TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from contextlib import suppress

import pytest
import sqlalchemy as sa
from databases import Database

from app import db
from app.db.sqlite import SQLITE_POOL_SIZE
from app.jobs import store
from app.jobs.model import JobFilter, JobStatus, NewJob, new_job

pytestmark = pytest.mark.anyio
TENANT = "acme"


def a_new_job(video: uuid.UUID | None = None) -> NewJob:
    return new_job([uuid.uuid4()], uuid.uuid4(), video or uuid.uuid4())


async def videos(database: Database, video: uuid.UUID) -> int:
    page = await store.list_jobs(database, TENANT, JobFilter(video=video), 100)
    return len(page.jobs)


async def test_each_call_binds_its_own_values_to_a_statement_compiled_once(
    database: Database,
) -> None:
    jobs = [await store.create_job(database, TENANT, a_new_job()) for _ in range(4)]
    for round_ in range(2):  # the second round runs entirely on statements compiled before
        for job in jobs:
            assert await store.get_job(database, TENANT, job.id) == job
            assert await store.get_job(database, "other", job.id) is None
        for first in (1, 3, 2):
            page = await store.list_jobs(database, TENANT, JobFilter(), first)
            assert [job.id for job in page.jobs] == [job.id for job in reversed(jobs)][:first]
        jobs[0] = await store.update_progress(database, TENANT, jobs[0].id, 10 + round_)
        assert jobs[0].progress == 10 + round_
    assert await store.count_jobs(database, TENANT, JobFilter(status=JobStatus.IN_PROGRESS)) == 4


@pytest.mark.fast_paths  # a fix of the pooled SQLite backend's (databases' own refuses them)
async def test_in_lists_of_every_length_match_their_own_values(database: Database) -> None:
    jobs = [await store.create_job(database, TENANT, a_new_job()) for _ in range(5)]
    for count in (1, 3, 2, 5, 1):
        wanted = [job.id for job in jobs[:count]]
        rows = await database.fetch_all(sa.select(db.jobs.c.id).where(db.jobs.c.id.in_(wanted)))
        assert sorted(str(row["id"]) for row in rows) == sorted(str(value) for value in wanted)


async def test_a_rolled_back_transaction_leaves_nothing_while_other_tasks_go_on(
    database: Database,
) -> None:
    dropped, kept = uuid.uuid4(), uuid.uuid4()

    async def rolled_back() -> None:
        with pytest.raises(RuntimeError):
            async with database.transaction():
                await store.create_job(database, TENANT, a_new_job(dropped))
                await asyncio.sleep(0.05)  # the other tasks run meanwhile
                raise RuntimeError("changed my mind")

    async def committed() -> None:
        async with database.transaction():
            await store.create_job(database, TENANT, a_new_job(kept))
            await store.create_job(database, TENANT, a_new_job(kept))

    async def reading() -> None:
        for _ in range(5):
            # Never sees the other task's uncommitted job: not its transaction.
            assert await videos(database, dropped) == 0
            await asyncio.sleep(0.01)

    await asyncio.gather(rolled_back(), committed(), reading())
    assert (await videos(database, dropped), await videos(database, kept)) == (0, 2)


async def test_a_task_cancelled_inside_a_transaction_leaves_no_change_behind(
    database: Database,
) -> None:
    dropped, kept = uuid.uuid4(), uuid.uuid4()
    inside = asyncio.Event()

    async def cancelled() -> None:
        async with database.transaction():
            await store.create_job(database, TENANT, a_new_job(dropped))
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(cancelled())
    await inside.wait()
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    # Later tasks may be handed the same pooled connection: their work is their own.
    await asyncio.gather(*(store.create_job(database, TENANT, a_new_job(kept)) for _ in range(3)))
    assert (await videos(database, dropped), await videos(database, kept)) == (0, 3)


@pytest.mark.engines("sqlite")
@pytest.mark.fast_paths  # the pooled backend queues one process's writers; databases' polls
async def test_a_burst_of_writes_from_one_process_all_succeed(database: Database) -> None:
    # SQLite's busy handler favours newcomers: with 1,000 writers at once, about one in
    # ten waited past the busy timeout ("database is locked"). Now this process's
    # writes queue, first come first served.
    threads = threading.active_count()
    most = threads

    async def count_threads() -> None:
        nonlocal most
        while True:
            most = max(most, threading.active_count())
            await asyncio.sleep(0)

    counting = asyncio.create_task(count_threads())
    created = await asyncio.gather(
        *(store.create_job(database, TENANT, a_new_job()) for _ in range(1000))
    )
    counting.cancel()
    assert len({job.id for job in created}) == 1000
    # A pooled connection is a thread: a handful, not one per waiting writer.
    assert most - threads <= SQLITE_POOL_SIZE
    assert await store.count_jobs(database, TENANT, JobFilter()) == 1000


async def test_rows_read_every_way_databases_offers(database: Database) -> None:
    job = await store.create_job(database, TENANT, a_new_job())
    row = await database.fetch_one(
        sa.select(db.jobs.c.id, db.jobs.c.tenant, db.jobs.c.progress).where(db.jobs.c.id == job.id)
    )
    assert row is not None
    assert (row["tenant"], row[1], row.tenant, row._mapping["tenant"]) == (TENANT,) * 4  # type: ignore[attr-defined]
    assert str(row["id"]) == str(job.id)
    assert dict(row._mapping)["progress"] == 0
    assert list(row._mapping.keys()) == list(row) == ["id", "tenant", "progress"]
    assert await database.fetch_val(sa.select(db.jobs.c.tenant)) == TENANT
