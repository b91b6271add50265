"""Two gateway processes, one SQLite file, one broker: a change on one is heard on the other.

Runs once with Redis (REDIS_URL) and once with PostgreSQL LISTEN/NOTIFY
(TEST_POSTGRES_URL) as BROADCAST_URL; each is skipped, with the reason, when its
variable is unset (CI sets both). The servers require tokens, so the events'
tenant scoping is exercised across the broker too; and they trace (printing spans),
so the events carry their trace context across it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from app.auth import MAX_TENANT_LENGTH, issue_token
from support.servers import Server, start_server
from tests.jobs_client import JobsClient
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES, LEGACY_WS, TRANSPORT_WS, graphql_socket

pytestmark = pytest.mark.anyio

LIMIT = 60
# Seconds a server may take to start on a busy machine (two start at once).
STARTUP_LIMIT = 60
SECRET = secrets.token_urlsafe(32)
SCOPES = ("jobs:read", "jobs:write", "jobs:report")
# The longest tenant there can be, with the biggest job: the largest event there is.
TENANT = "t" * MAX_TENANT_LENGTH
BROKERS = {"redis": "REDIS_URL", "postgres": "TEST_POSTGRES_URL"}


def token(tenant: str = TENANT) -> str:
    return issue_token(SECRET, tenant, SCOPES, ttl=600)


def auth(tenant: str = TENANT) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant)}"}


@pytest.fixture(scope="module", params=list(BROKERS))
def broadcast_url(request: pytest.FixtureRequest) -> str:
    variable = BROKERS[request.param]
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set: no {request.param} broker to broadcast through")
    return url


@pytest.fixture(scope="module")
def servers(
    broadcast_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Two processes per broker, shared by this module's tests (each uses jobs of its own)."""
    tmp_path = tmp_path_factory.mktemp("two-processes")
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
        "BROADCAST_URL": broadcast_url,
        "AUTH_JWT_SECRET": SECRET,
        # Behind one load balancer, both give out the same URLs.
        "PUBLIC_URL": "https://jobs.example.test",
        # Spans printed to each server's log, a tenth of a second after they end.
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    # Started side by side: each takes seconds, and they migrate the one file safely.
    with ThreadPoolExecutor(2) as pool:
        starting = [
            pool.submit(start_server, env, tmp_path / f"{name}.log", timeout=STARTUP_LIMIT)
            for name in "ab"
        ]
        started = [future.result() for future in starting]
    yield started[0], started[1]
    for server in started:
        server.stop()


@pytest.fixture
async def clients(servers: tuple[Server, Server]) -> AsyncIterator[tuple[JobsClient, JobsClient]]:
    a, b = servers
    async with (
        httpx.AsyncClient(base_url=a.url) as on_a,
        httpx.AsyncClient(base_url=b.url) as on_b,
    ):
        yield JobsClient(on_a, token()), JobsClient(on_b, token())


async def test_a_change_on_one_process_reaches_subscribers_on_the_other(
    servers: tuple[Server, Server], clients: tuple[JobsClient, JobsClient]
) -> None:
    (a, b), (on_a, on_b) = servers, clients
    video = str(uuid.uuid4())
    barrier = await on_b.create()
    with anyio.fail_after(LIMIT):
        async with (
            graphql_socket(b.ws_url, LEGACY_WS, payload=auth()) as updates_on_b,
            graphql_socket(a.ws_url, TRANSPORT_WS, payload=auth()) as updates_on_a,
        ):
            for ws in (updates_on_b, updates_on_a):
                await ws.subscribe("updates", JOB_UPDATES, filter={"video": video})
                await ws.subscribe("ready", JOB_PROGRESS, id=barrier["id"])
                assert await ws.job("ready") == barrier

            # The biggest job of the longest tenant: the largest event there is fits.
            inputs = [str(uuid.uuid4()) for _ in range(100)]
            created = await on_a.create(video, inputs)
            async with graphql_socket(b.ws_url, TRANSPORT_WS, payload=auth()) as progress_on_b:
                await progress_on_b.subscribe("p", JOB_PROGRESS, id=created["id"])
                assert await progress_on_b.job("p") == created
                changes = [
                    await on_a.report(created, 10),
                    await on_b.report(created, 20),
                    await on_a.report(created, 30, "COMPLETED"),
                ]
                assert await progress_on_b.until_complete("p") == changes

            for ws in (updates_on_b, updates_on_a):
                assert [await ws.job("updates") for _ in range(4)] == [created, *changes]


async def test_subscribers_on_both_processes_miss_no_report_made_through_either(
    servers: tuple[Server, Server], clients: tuple[JobsClient, JobsClient]
) -> None:
    (a, b), (on_a, on_b) = servers, clients
    job = await on_a.create()
    last_progress = 29
    reached = [asyncio.Event() for _ in range(last_progress + 1)]
    reached[0].set()

    async def workers() -> None:
        # Alternating processes, each report after the one before it.
        for progress in range(1, last_progress + 1):
            await (on_a if progress % 2 else on_b).report(job, progress)
            reached[progress].set()
        await on_b.report(job, last_progress, "COMPLETED")

    async def subscriber(server: Server, joins_at: int) -> list[int]:
        await reached[joins_at].wait()
        async with graphql_socket(server.ws_url, payload=auth()) as ws:
            await ws.subscribe("1", JOB_PROGRESS, id=job["id"])
            return [seen["progress"] for seen in await ws.until_complete("1")]

    joining = [(server, at) for at in (0, 9, 21) for server in (a, b)]
    with anyio.fail_after(LIMIT):
        watching = asyncio.gather(*(subscriber(server, at) for server, at in joining))
        _, results = await asyncio.gather(workers(), watching)

    for (_, joins_at), seen in zip(joining, results, strict=True):
        assert seen[0] >= joins_at
        assert seen == [*range(seen[0], last_progress + 1), 100], (joins_at, seen)


async def test_another_tenant_hears_nothing_of_a_tenants_changes(
    servers: tuple[Server, Server], clients: tuple[JobsClient, JobsClient]
) -> None:
    (_, b), (on_a, _) = servers, clients
    other = JobsClient(on_a.http, token("other-tenant"))
    barrier = await other.create()
    with anyio.fail_after(LIMIT):
        async with graphql_socket(b.ws_url, payload=auth("other-tenant")) as ws:
            await ws.subscribe("all", JOB_UPDATES)
            await ws.subscribe("ready", JOB_PROGRESS, id=barrier["id"])
            assert await ws.job("ready") == barrier

            theirs = await on_a.create()
            await on_a.report(theirs, 50)
            await on_a.delete(theirs)
            # Subscribing to their job by id is NOT_FOUND, as for any unknown job.
            await ws.subscribe("theirs", JOB_PROGRESS, id=theirs["id"])
            refused: dict[str, Any] = await ws.receive()
            assert refused["type"] == "error" and refused["id"] == "theirs"
            assert refused["payload"][0]["extensions"]["code"] == "NOT_FOUND"
            # The other tenant's own next change is the first thing `all` hears.
            own = await other.report(barrier, 5)
            heard = [await ws.receive(), await ws.receive()]
    assert sorted((m["id"], m["payload"]["data"]) for m in heard) == [
        ("all", {"jobUpdates": own}),
        ("ready", {"jobProgress": own}),
    ]


def printed_spans(log: Path, name: str, trace_id: str) -> list[dict[str, Any]]:
    """The spans named `name` of trace `trace_id` a server's console exporter printed."""
    text, decoder, found, at = log.read_text(), json.JSONDecoder(), [], 0
    while (start := text.find("\n{\n", at)) >= 0:
        span, at = decoder.raw_decode(text, start + 1)
        if span.get("name") == name and span["context"]["trace_id"] == f"0x{trace_id}":
            found.append(span)
    return found


async def test_a_report_on_one_process_and_its_delivery_on_the_other_share_one_trace(
    servers: tuple[Server, Server], clients: tuple[JobsClient, JobsClient]
) -> None:
    (a, b), (on_a, _) = servers, clients
    job = await on_a.create()
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with anyio.fail_after(LIMIT):
        async with graphql_socket(b.ws_url, TRANSPORT_WS, payload=auth()) as progress_on_b:
            await progress_on_b.subscribe("p", JOB_PROGRESS, id=job["id"])
            assert (await progress_on_b.job("p"))["progress"] == 0
            # A worker's report over REST, on the other process, continuing its own trace.
            reported = await on_a.http.patch(
                f"/encoding/jobs/{job['id']}",
                json={"progress": 50},
                headers={**auth(), "traceparent": traceparent},
            )
            assert reported.status_code == 200, reported.text
            assert (await progress_on_b.job("p"))["progress"] == 50
        while True:
            published = printed_spans(a.log, "publish jobs_gateway_events", trace_id)
            delivered = printed_spans(b.log, "process jobs_gateway_events", trace_id)
            if published and delivered:
                break
            await asyncio.sleep(0.1)
    [publish], [delivery] = published, delivered
    assert delivery["parent_id"] == publish["context"]["span_id"]
    assert printed_spans(a.log, "PATCH /encoding/jobs/{id}", trace_id)
