"""The outbox at the storage level: migration 0007 in place (over 0006), deliveries recorded with
the change that causes them and only then, job.progress coalesced."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from databases import Database

from app import db
from app.db.tables import webhook_deliveries
from app.errors import InvalidTransition
from app.jobs import store
from app.jobs.model import JobStatus, new_job
from app.settings import Settings
from app.webhooks import store as webhooks
from app.webhooks.model import EventType
from app.webhooks.outbox import Outbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def blank_database_url(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    if database_url.startswith("sqlite"):
        yield database_url
        return
    postgres = request.getfixturevalue("postgres_databases")
    url = postgres.create_empty()
    yield url
    postgres.drop(url)


def a_job() -> object:
    return new_job([uuid.uuid4()], uuid.uuid4(), uuid.uuid4())


async def add_endpoint(database: Database, tenant: str, *events: EventType) -> uuid.UUID:
    endpoint_id = uuid.uuid4()
    await webhooks.create_endpoint(
        database, endpoint_id, tenant, "https://hooks.example.test/", "", frozenset(events), "x"
    )
    return endpoint_id


async def recorded(database: Database) -> list[tuple[str, int]]:
    rows = await database.fetch_all(
        sa.select(webhook_deliveries.c.event, webhook_deliveries.c.attempts).order_by(
            webhook_deliveries.c.seq
        )
    )
    return [(row._mapping["event"], row._mapping["attempts"]) for row in rows]


async def test_migration_0007_in_place_keeps_the_jobs_and_their_later_changes_are_recorded(
    blank_database_url: str,
) -> None:
    settings = Settings(database_url=blank_database_url)
    await db.migrate(settings, "0006")
    database = await db.connect(settings)
    job_id, now = uuid.uuid4(), datetime.now(UTC)
    try:
        await database.execute(
            sa.text(
                "INSERT INTO jobs (id, tenant, status, progress, profile, video, inputs,"
                " created_at, updated_at, change_seq) VALUES (:id, 't', 0, 40, :p, :v, :i,"
                " :now, :now, 1)"
            ).bindparams(
                sa.bindparam("id", job_id, type_=sa.Uuid()),
                sa.bindparam("p", uuid.uuid4(), type_=sa.Uuid()),
                sa.bindparam("v", uuid.uuid4(), type_=sa.Uuid()),
                sa.bindparam("i", [str(uuid.uuid4())], type_=db.jobs.c.inputs.type),
                sa.bindparam("now", now, type_=sa.DateTime(timezone=True)),
            )
        )
    finally:
        await database.disconnect()
    assert await db.migrate(settings) == ["0007"]
    database = await db.connect(settings)
    try:
        await add_endpoint(database, "t", EventType.JOB_COMPLETED)
        done = await store.update_progress(database, "t", job_id, None, JobStatus.COMPLETED)
        assert (done.progress, done.created_at) == (100, now)
        assert await recorded(database) == [("job.completed", 0)]
    finally:
        await database.disconnect()


async def test_deliveries_are_recorded_with_their_change_and_a_refused_change_records_none(
    database: Database,
) -> None:
    await add_endpoint(database, "t", EventType.JOB_CREATED, EventType.JOB_FAILED)
    await add_endpoint(database, "other", *EventType)
    job = await store.create_job(database, "t", a_job())  # type: ignore[arg-type]
    await store.update_progress(database, "t", job.id, 30)  # job.progress: not wanted
    await store.update_progress(database, "t", job.id, 40, JobStatus.FAILED)
    with pytest.raises(InvalidTransition):
        await store.update_progress(database, "t", job.id, 50)
    await store.delete_job(database, "t", job.id)  # job.deleted: not wanted
    assert await recorded(database) == [("job.created", 0), ("job.failed", 0)]


async def test_progress_is_coalesced_per_job_and_dropped_when_the_job_ends(
    database: Database,
) -> None:
    outbox = Outbox(progress_interval=60)
    await add_endpoint(database, "t", EventType.JOB_PROGRESS, EventType.JOB_COMPLETED)
    job = await store.create_job(database, "t", a_job(), outbox)  # type: ignore[arg-type]
    for progress in (10, 20, 30, 40):
        await store.update_progress(database, "t", job.id, progress, outbox=outbox)
    # 10 due now; 20, 30 and 40 are one delivery due a minute later, holding 40.
    rows = await database.fetch_all(
        sa.select(webhook_deliveries.c.payload, webhook_deliveries.c.due_at).order_by(
            webhook_deliveries.c.seq
        )
    )
    assert len(rows) == 2
    assert '"progress":10' in rows[0]._mapping["payload"]
    assert '"progress":40' in rows[1]._mapping["payload"]
    # The first is under way (as a deliverer's claim leaves it).
    claimed = await webhooks.claim(database, 10, lease=60)
    assert [delivery.attempts for delivery in claimed] == [1]
    await store.update_progress(database, "t", job.id, None, JobStatus.COMPLETED, outbox)
    # The one never sent is stale now: dropped; the completion says more.
    assert await recorded(database) == [("job.progress", 1), ("job.completed", 0)]
