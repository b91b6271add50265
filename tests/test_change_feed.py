"""A process that dies between its commit and its publish leaves nobody stale.

Two gateway processes share one database and a Redis broker. The writer has the
test hook TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH on: it exits right after
committing a change that finishes a job, before publishing it, as a process killed
at that moment would. The subscribers on the other process must still be sent the
stored final state (and `complete`), from the change feed, within its bound, once.
Before the change feed they stayed at the previous state for ever. SQLite always,
PostgreSQL with TEST_POSTGRES_URL; needs REDIS_URL.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest

from app.jobs.events import EXIT_BEFORE_PUBLISH
from app.settings import Settings
from support.servers import Server, start_server
from tests.jobs_client import JobsClient
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES, graphql_socket

pytestmark = pytest.mark.anyio

LIMIT = 60
POLL = Settings().change_poll_interval
# What the docs promise (docs/reliability.md): 3 polls, plus a second for a busy machine.
BOUND = 3 * POLL + 1.0


@pytest.fixture
def processes(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """(writer that dies before publishing a finish, subscribers' process)."""
    redis = os.environ.get("REDIS_URL")
    if not redis:
        pytest.skip("REDIS_URL is not set: two processes need a broker")
    # Behind one load balancer, both give out the same URLs.
    env = {
        "DATABASE_URL": database_url,
        "BROADCAST_URL": redis,
        "PUBLIC_URL": "https://jobs.example.test",
    }
    with ThreadPoolExecutor(2) as pool:
        writer = pool.submit(
            start_server,
            {**env, "TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH": "1"},
            tmp_path / "writer.log",
            timeout=LIMIT,
        )
        reader = pool.submit(start_server, env, tmp_path / "reader.log", timeout=LIMIT)
        servers = writer.result(), reader.result()
    yield servers
    for server in servers:
        server.stop()
    assert "Traceback" not in (tmp_path / "reader.log").read_text()


async def test_subscribers_elsewhere_see_a_finish_whose_publisher_died_after_its_commit(
    processes: tuple[Server, Server],
) -> None:
    writer, reader = processes
    video = str(uuid.uuid4())
    async with (
        httpx.AsyncClient(base_url=writer.url, timeout=LIMIT) as on_writer,
        httpx.AsyncClient(base_url=reader.url, timeout=LIMIT) as on_reader,
    ):
        jobs, reading = JobsClient(on_writer), JobsClient(on_reader)
        job = await reading.create(video)
        with anyio.fail_after(LIMIT):
            async with graphql_socket(reader.ws_url) as ws:
                await ws.subscribe("progress", JOB_PROGRESS, id=job["id"])
                assert await ws.job("progress") == job
                await ws.subscribe("updates", JOB_UPDATES, filter={"video": video})
                # An ordinary report travels through the broker as usual.
                ten = await jobs.report(job, 10)
                assert await ws.job("progress") == ten
                assert await ws.job("updates") == ten

                # The writer commits COMPLETED and exits before publishing it.
                with pytest.raises(httpx.TransportError):
                    await jobs.report(job, 10, "COMPLETED")
                died = time.monotonic()
                assert writer.process.wait(LIMIT) == EXIT_BEFORE_PUBLISH
                stored = await reading.graphql(
                    "query ($id: UUID!) { job(id: $id) { status progress } }", id=job["id"]
                )
                assert stored == {"status": "COMPLETED", "progress": 100}

                # Before: nothing more, ever (this waited LIMIT and failed).
                done = await ws.job("progress")
                waited = time.monotonic() - died
                assert (done["status"], done["progress"]) == ("COMPLETED", 100)
                assert await ws.receive() == {"id": "progress", "type": "complete"}
                assert await ws.job("updates") == done
                assert waited < BOUND, f"{waited:.2f}s"

                # Once, not again at the next polls.
                await ws.subscribe("again", JOB_PROGRESS, id=job["id"])
                assert await ws.job("again") == done
                assert await ws.receive() == {"id": "again", "type": "complete"}
        body = (await on_reader.get("/readyz")).json()
        assert body["broker"]["recovered"] == 1, body
