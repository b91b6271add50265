"""Migrations: several processes starting at once, and data kept across revisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from app import db
from app.jobs import idempotency, keys, store
from app.jobs.model import new_job
from app.settings import Settings
from support.servers import ROOT

# Every revision, oldest first.
REVISIONS = [
    script.revision
    for script in reversed(list(ScriptDirectory(str(db.MIGRATIONS)).walk_revisions()))
]


@pytest.fixture
def blank_database_url(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database with no schema at all, on the engine `database_url` stands for."""
    if database_url.startswith("sqlite"):
        yield database_url  # a file that does not exist yet
        return
    postgres = request.getfixturevalue("postgres_databases")
    url = postgres.create_empty()
    yield url
    postgres.drop(url)


def test_processes_migrating_at_once_apply_each_revision_once(blank_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": blank_database_url}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "migrate"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(process.wait(60), *process.communicate()) for process in processes]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    outputs = sorted(out.strip() for _, out, _ in results)
    assert (
        outputs == [f"migrated: applied {', '.join(REVISIONS)}"] + ["schema is up to date"] * 3
    ), results


@pytest.mark.anyio
async def test_jobs_stored_before_the_inputs_change_read_the_same_after(
    blank_database_url: str,
) -> None:
    settings = Settings(database_url=blank_database_url)
    assert await db.migrate(settings, "0001") == ["0001"]
    inputs = [str(uuid.uuid4()) for _ in range(5)]
    job_id, now = uuid.uuid4(), datetime.now(UTC)
    database = await db.connect(settings)
    try:
        # Written the way revision 0001 stored it: inputs as JSON text.
        await database.execute(
            sa.text(
                "INSERT INTO jobs (id, tenant, status, progress, profile, video, inputs,"
                " created_at, updated_at) VALUES (:id, 't', 0, 40, :profile, :video,"
                " :inputs, :now, :now)"
            ).bindparams(
                sa.bindparam("id", job_id, type_=sa.Uuid()),
                sa.bindparam("profile", uuid.uuid4(), type_=sa.Uuid()),
                sa.bindparam("video", uuid.uuid4(), type_=sa.Uuid()),
                sa.bindparam("inputs", json.dumps(inputs)),
                sa.bindparam("now", now, type_=sa.DateTime(timezone=True)),
            )
        )
    finally:
        await database.disconnect()

    assert await db.migrate(settings) == REVISIONS[1:]
    database = await db.connect(settings)
    try:
        job = await store.get_job(database, "t", job_id)
    finally:
        await database.disconnect()
    assert job is not None
    assert [str(value) for value in job.inputs] == inputs
    assert (job.progress, job.created_at) == (40, now)


@pytest.mark.anyio
async def test_downgrading_to_the_first_revision_and_back_keeps_the_jobs(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url)
    await db.migrate(settings)
    database = await db.connect(settings)
    try:
        created = await store.create_job(
            database, "t", new_job([uuid.uuid4(), uuid.uuid4()], uuid.uuid4(), uuid.uuid4())
        )
    finally:
        await database.disconnect()

    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))

    def downgrade(connection: sa.Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")

    url = database_url.replace("sqlite:///", "sqlite+aiosqlite:///").replace(
        "postgresql://", "postgresql+asyncpg://"
    )
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(downgrade)
    finally:
        await engine.dispose()

    assert await db.migrate(settings) == REVISIONS[1:]
    database = await db.connect(settings)
    try:
        assert await store.get_job(database, "t", created.id) == created
    finally:
        await database.disconnect()


@pytest.mark.anyio
async def test_jobs_stored_before_change_numbers_get_one_and_later_changes_come_after(
    blank_database_url: str,
) -> None:
    settings = Settings(database_url=blank_database_url)
    assert await db.migrate(settings, "0004") == REVISIONS[:4]
    database = await db.connect(settings)
    ids, now = [uuid.uuid4() for _ in range(3)], datetime.now(UTC)
    try:
        for job_id in ids:  # as revision 0004 stored them
            await database.execute(
                sa.insert(db.jobs).values(
                    id=job_id,
                    tenant="t",
                    status=0,
                    progress=0,
                    profile=uuid.uuid4(),
                    video=uuid.uuid4(),
                    inputs=[str(uuid.uuid4())],
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await database.disconnect()

    assert await db.migrate(settings) == REVISIONS[4:]
    database = await db.connect(settings)
    try:
        before = await store.changes_after(database, 0, 10)
        # In place: every existing job numbered, each its own number.
        assert sorted(change.id for change in before) == sorted(ids)
        assert len({change.seq for change in before}) == 3
        last = await store.last_change(database)
        assert last == max(change.seq for change in before)
        changed = await store.update_progress(database, "t", ids[0], 50)
        created = await store.create_job(
            database, "t", new_job([uuid.uuid4()], uuid.uuid4(), uuid.uuid4())
        )
        after = await store.changes_after(database, last, 10)
    finally:
        await database.disconnect()
    assert [change.id for change in after] == [changed.id, created.id]
    assert after[0].seq > last
    assert after[0].key == (changed.updated_at, False, False, 50)


@pytest.mark.anyio
async def test_a_database_at_change_numbers_gets_idempotency_keys_in_place_jobs_kept(
    blank_database_url: str,
) -> None:
    settings = Settings(database_url=blank_database_url)
    assert await db.migrate(settings, "0005") == REVISIONS[:5]
    database = await db.connect(settings)
    try:  # jobs as revision 0005 stores them (written directly: today's create_job
        # also reads tables of later revisions, the webhook endpoints)
        before = []
        for change in range(1, 4):
            job_id, now = uuid.uuid4(), datetime.now(UTC)
            await database.execute(
                db.jobs.insert().values(
                    id=job_id,
                    tenant="t",
                    status=0,
                    progress=0,
                    profile=uuid.uuid4(),
                    video=uuid.uuid4(),
                    inputs=[str(uuid.uuid4())],
                    created_at=now,
                    updated_at=now,
                    change_seq=change,
                )
            )
            job = await store.get_job(database, "t", job_id)
            assert job is not None
            before.append(job)
    finally:
        await database.disconnect()

    assert await db.migrate(settings) == REVISIONS[5:]
    database = await db.connect(settings)
    try:
        for job in before:
            assert await store.get_job(database, "t", job.id) == job
        request = new_job([uuid.uuid4()], uuid.uuid4(), uuid.uuid4())
        key = idempotency.for_request("retry-me", request)
        day = timedelta(hours=24)
        created = await keys.create_job_once(database, "t", request, key, day)
        replayed = await keys.create_job_once(database, "t", request, key, day)
    finally:
        await database.disconnect()
    assert (created.replayed, replayed.replayed) == (False, True)
    # Created after the old jobs, so listed before them.
    assert replayed.job == created.job and created.job.seq > before[-1].seq
