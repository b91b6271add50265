"""Redis goes away under live subscriptions and comes back: nobody is left stale.

Two gateway processes share one SQLite file and a Redis server of this test's own
(the shared one at REDIS_URL is never stopped). Redis is killed while both have
subscribers; workers keep reporting through one process meanwhile. The reports
succeed, and once Redis is back each process reconnects by itself, every
subscriber on either process is sent the job's state as it is now, and later
changes flow between the processes again.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from support.servers import Server, start_server
from support.services import RedisServer
from tests.jobs_client import JobsClient
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES, GraphQLSocket, graphql_socket

pytestmark = pytest.mark.anyio

# Nothing here waits this long unless something is broken (the machine may be busy).
LIMIT = 60


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    reason = RedisServer.skip_reason()
    if reason:
        pytest.skip(reason)
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateways(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
        "BROADCAST_URL": redis_server.url,
        # Behind one load balancer, both give out the same URLs.
        "PUBLIC_URL": "https://jobs.example.test",
    }
    with ThreadPoolExecutor(2) as pool:
        starting = [
            pool.submit(start_server, env, tmp_path / f"{name}.log", timeout=LIMIT) for name in "ab"
        ]
        started = [future.result() for future in starting]
    yield started[0], started[1]
    for server in started:
        server.stop()
    for name in "ab":
        log = (tmp_path / f"{name}.log").read_text()
        assert "Traceback" not in log, log


@pytest.fixture
async def jobs(gateways: tuple[Server, Server]) -> AsyncIterator[JobsClient]:
    async with httpx.AsyncClient(base_url=gateways[0].url) as http:
        yield JobsClient(http)


async def readiness(server: Server) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(server.url + "/readyz", timeout=10)
    return response.status_code, response.json()


async def until_ready(server: Server) -> dict[str, Any]:
    """/readyz once it is 200 and nothing waits to be published (the caller bounds the wait)."""
    while True:
        status, body = await readiness(server)
        if status == 200 and body["broker"]["unpublished"] == 0:
            return body
        await anyio.sleep(0.1)


async def until_unavailable(server: Server) -> dict[str, Any]:
    while True:
        status, body = await readiness(server)
        if status == 503:
            return body
        await anyio.sleep(0.1)


async def received(ws: GraphQLSocket, count: int) -> dict[str, list[Any]]:
    """The next `count` messages, per operation: each job sent, or "complete"."""
    found: dict[str, list[Any]] = {}
    for _ in range(count):
        message = await ws.receive()
        if message["type"] == "complete":
            found.setdefault(message["id"], []).append("complete")
            continue
        assert message["type"] == ws.next_type and "errors" not in message["payload"], message
        found.setdefault(message["id"], []).append(next(iter(message["payload"]["data"].values())))
    return found


async def test_subscribers_on_every_process_catch_up_after_redis_restarts(
    redis_server: RedisServer, gateways: tuple[Server, Server], jobs: JobsClient
) -> None:
    a, b = gateways
    video = str(uuid.uuid4())
    job = await jobs.report(await jobs.create(video), 10)
    with anyio.fail_after(LIMIT):
        async with graphql_socket(a.ws_url) as on_a, graphql_socket(b.ws_url) as on_b:
            for ws in (on_a, on_b):
                await ws.subscribe("progress", JOB_PROGRESS, id=job["id"])
                assert await ws.job("progress") == job
                await ws.subscribe("updates", JOB_UPDATES, filter={"video": video})

            redis_server.stop()
            # Reports made meanwhile are committed and acknowledged as usual, and
            # subscribers on the process that made them hear them at once.
            during = [await jobs.report(job, progress) for progress in (20, 30)]
            assert await received(on_a, 4) == {"progress": during, "updates": during}
            status, body = await readiness(b)
            assert status == 503 and body["problems"][0].startswith("broadcast: "), body

            redis_server.start()
            # On the other process, each subscriber is sent the job as it is now.
            now = {"progress": [during[-1]], "updates": [during[-1]]}
            assert await received(on_b, 2) == now
            for server in gateways:
                ready = await until_ready(server)
                broker = {key: ready["broker"][key] for key in ("connected", "reconnects")}
                assert broker == {"connected": True, "reconnects": 1}

            # Changes flow between the processes again, both ways; nothing was repeated.
            later = await jobs.report(job, 40)
            for ws in (on_a, on_b):
                assert await received(ws, 2) == {"progress": [later], "updates": [later]}
            async with httpx.AsyncClient(base_url=b.url) as http:
                last = await JobsClient(http).report(job, 50, "COMPLETED")
            for ws in (on_a, on_b):
                assert await received(ws, 3) == {
                    "progress": [last, "complete"],
                    "updates": [last],
                }


async def test_a_gateway_stays_up_while_redis_is_down_and_reconnects_when_it_returns(
    redis_server: RedisServer, gateways: tuple[Server, Server], jobs: JobsClient
) -> None:
    a, b = gateways
    redis_server.stop()
    with anyio.fail_after(LIMIT):
        for server in gateways:
            await until_unavailable(server)
        # Writes go on while the broker is away; their events wait for it.
        created = await jobs.create()
        status, body = await readiness(a)
        assert status == 503 and body["broker"]["unpublished"] == 1, body
        # A subscriber on the other process joining in the gap gets the stored state.
        async with graphql_socket(b.ws_url) as ws:
            await ws.subscribe("p", JOB_PROGRESS, id=created["id"])
            assert await ws.job("p") == created
            redis_server.start()
            for server in gateways:
                await until_ready(server)
            changed = await jobs.report(created, 60)
            assert await ws.job("p") == changed
    for server in gateways:
        assert server.process.poll() is None


@pytest.fixture
def lone_gateway(redis_server: RedisServer, tmp_path: Path) -> Iterator[Server]:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", "BROADCAST_URL": redis_server.url}
    server = start_server(env, tmp_path / "gateway.log", timeout=LIMIT)
    yield server
    server.stop()


async def test_readyz_says_so_while_subscribers_cannot_be_caught_up_and_clears_once_they_are(
    redis_server: RedisServer, lone_gateway: Server, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=lone_gateway.url) as http:
        jobs = JobsClient(http)
        job = await jobs.create()
        with anyio.fail_after(LIMIT):
            redis_server.stop()
            await until_unavailable(lone_gateway)
            await jobs.report(job, 20)  # its event waits for the broker
            # The catch-up cannot read the jobs (as when its database connection is
            # broken) while the database itself answers /readyz's checks.
            with sqlite3.connect(tmp_path / "jobs.db") as db:
                db.execute("ALTER TABLE jobs RENAME TO jobs_away")
            redis_server.start()
            while True:  # the broker is back; the catch-up fails each second
                status, body = await readiness(lone_gateway)
                if body["broker"]["connected"]:
                    break
                await anyio.sleep(0.1)
            await anyio.sleep(1.5)
            status, body = await readiness(lone_gateway)
            # Before: 200 "ready", while subscribers stayed stale for as long as it lasted.
            assert status == 503, body
            assert "not caught up" in body["broadcast"], body
            with sqlite3.connect(tmp_path / "jobs.db") as db:
                db.execute("ALTER TABLE jobs_away RENAME TO jobs")
            body = await until_ready(lone_gateway)
            assert body["broadcast"] == "ok"
