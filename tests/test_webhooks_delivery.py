"""Webhooks end to end: a real gateway process, a real receiver on 127.0.0.1 that
verifies every call with `standardwebhooks`, SQLite always and PostgreSQL with
TEST_POSTGRES_URL. The retry schedule is scaled down (WEBHOOK_RETRY_SCALE) so a
day of retries takes seconds."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from standardwebhooks import Webhook

from app.jobs.events import EXIT_BEFORE_PUBLISH
from support.receiver import Receiver
from support.servers import Server, start_server
from tests.jobs_client import JobsClient

pytestmark = pytest.mark.anyio

LIMIT = 30
# Starting a gateway on a busy CI machine (workers: several processes) takes a while.
START = 120
ENDPOINT_FIELDS = "id url events enabled disabledReason"
CREATE_ENDPOINT = (
    "mutation($url: String!, $events: [WebhookEventType!]!) {"
    ' createWebhookEndpoint(url: $url, events: $events, description: "test") {'
    f" secret endpoint {{ {ENDPOINT_FIELDS} }} }} }}"
)
UPDATE_ENDPOINT = (
    "mutation($id: UUID!, $enabled: Boolean) { updateWebhookEndpoint(id: $id, enabled: $enabled)"
    f" {{ {ENDPOINT_FIELDS} }} }}"
)
ENDPOINTS = f"{{ webhookEndpoints {{ {ENDPOINT_FIELDS} }} }}"
ROTATE = "mutation($id: UUID!) { rotateWebhookSecret(id: $id) { secret } }"
DELETE_ENDPOINT = "mutation($id: UUID!) { deleteWebhookEndpoint(id: $id) { id } }"
DELIVERIES = (
    "query($endpoint: UUID!) { webhookDeliveries(endpoint: $endpoint, first: 50) { edges { node {"
    " id event jobId status attempts { attemptedAt statusCode error } } } } }"
)


def gateway_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        # 5 s, 5 min, 30 min... become 1 ms, 60 ms, 360 ms, 1.4 s, 3.6 s, 7.2 s, 7.2 s.
        "WEBHOOK_RETRY_SCALE": "0.0002",
        "WEBHOOK_POLL_INTERVAL": "0.1",
        **extra,
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One gateway per engine for the tests that need no settings of their own (a
    process start is most of a test's time); each test removes its endpoints."""
    folder = tmp_path_factory.mktemp("gateway")
    postgres = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder}/jobs.db"
    else:
        postgres = request.getfixturevalue("postgres_databases")
        url = postgres.create_empty()
    env = gateway_env(url, WEBHOOK_PROGRESS_INTERVAL="1")
    server = start_server(env, folder / "gateway.log", timeout=START)
    yield server
    server.stop()
    if postgres is not None:
        postgres.drop(url)
    assert "Traceback" not in server.log.read_text()


@pytest.fixture
async def jobs(gateway: Server) -> AsyncIterator[JobsClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as http:
        client = JobsClient(http)
        yield client
        for endpoint in await endpoints(client):
            await client.graphql(DELETE_ENDPOINT, id=endpoint["id"])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    yield running
    await running.stop()
    assert running.rejected == []


async def add_endpoint(
    jobs: JobsClient, receiver: Receiver, path: str, events: list[str]
) -> dict[str, Any]:
    created = await jobs.graphql(CREATE_ENDPOINT, url=receiver.url(path), events=events)
    assert created["secret"].startswith("whsec_")
    receiver.secrets[path] = created["secret"]
    endpoint: dict[str, Any] = created["endpoint"]
    return endpoint


async def deliveries(jobs: JobsClient, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    page = await jobs.graphql(DELIVERIES, endpoint=endpoint["id"])
    return [edge["node"] for edge in page["edges"]]


async def endpoints(jobs: JobsClient) -> list[dict[str, Any]]:
    response = await jobs.http.post("/graphql", json={"query": ENDPOINTS})
    found: list[dict[str, Any]] = response.json()["data"]["webhookEndpoints"]
    return found


async def settle(server: Server) -> None:
    """A few of the deliverer's polls: anything still due would have been sent."""
    await asyncio.sleep(0.5)


async def test_a_completed_job_is_delivered_once_signed_with_the_job_as_rest_shows_it(
    gateway: Server, jobs: JobsClient, receiver: Receiver
) -> None:
    http = jobs.http
    endpoint = await add_endpoint(jobs, receiver, "/a", ["JOB_COMPLETED"])
    job = await jobs.create()
    await jobs.report(job, 50)
    done = await jobs.report(job, 50, "COMPLETED")
    [call] = await receiver.wait_for(1, "/a")
    rest = (await http.get(f"/encoding/jobs/{job['id']}")).json()
    await settle(gateway)
    [delivery] = await deliveries(jobs, endpoint)
    assert call.payload["type"] == "job.completed"
    assert call.payload["data"] == rest
    assert call.payload["data"]["updated_at"] == done["updatedAt"]
    assert call.payload["timestamp"].endswith("Z")
    assert len(receiver.calls) == 1
    assert delivery["id"] == call.id
    assert delivery["status"] == "DELIVERED"
    assert [(a["statusCode"], a["error"]) for a in delivery["attempts"]] == [(200, None)]


async def test_a_create_retried_with_its_idempotency_key_is_announced_once(
    gateway: Server, jobs: JobsClient, receiver: Receiver
) -> None:
    """The keyed create records its job.created in its own transaction; replays, on
    REST and GraphQL, record nothing."""
    await add_endpoint(jobs, receiver, "/a", ["JOB_CREATED"])
    request = {
        "inputs": [str(uuid.uuid4())],
        "profile": str(uuid.uuid4()),
        "video": str(uuid.uuid4()),
    }
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    answers = [await jobs.http.post("/encoding/jobs", json=request, headers=key) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [201] * 3
    replay = await jobs.graphql(
        "mutation($input: CreateJobInput!, $key: String) {"
        " createJob(input: $input, idempotencyKey: $key) { id } }",
        input=request,
        key=key["Idempotency-Key"],
    )
    assert replay["id"] == answers[0].json()["id"]
    [call] = await receiver.wait_for(1, "/a")
    await settle(gateway)
    assert len(receiver.calls) == 1
    assert call.payload["type"] == "job.created"
    assert call.payload["data"] == answers[0].json()


async def test_after_a_rotation_both_secrets_verify_for_a_day(
    jobs: JobsClient, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(jobs, receiver, "/a", ["JOB_CREATED"])
    old = receiver.secrets["/a"]
    rotated = await jobs.graphql(ROTATE, id=endpoint["id"])
    receiver.secrets["/a"] = rotated["secret"]
    await jobs.create()
    [call] = await receiver.wait_for(1, "/a")
    assert len(call.headers["webhook-signature"].split()) == 2
    assert Webhook(old).verify(call.body, call.headers) == call.payload
    assert Webhook(rotated["secret"]).verify(call.body, call.headers) == call.payload


async def test_a_receiver_down_then_back_gets_the_same_webhook_id_on_every_attempt(
    jobs: JobsClient,
) -> None:
    receiver = Receiver()
    # Down: the port is held (bound, not listening: connections are refused) so that
    # no other process on the machine takes it meanwhile.
    holder = socket.socket()
    holder.bind(("127.0.0.1", receiver.port))
    endpoint = await add_endpoint(jobs, receiver, "/a", ["JOB_CREATED"])
    job = await jobs.create()
    # Wait for two refused attempts.
    for _ in range(LIMIT * 10):
        [delivery] = await deliveries(jobs, endpoint)
        if len(delivery["attempts"]) >= 2:
            break
        await asyncio.sleep(0.1)
    assert delivery["status"] == "PENDING"
    assert all(a["statusCode"] is None and a["error"] for a in delivery["attempts"])
    # Back, but overloaded once (503, Retry-After: 1), then well.
    receiver.answers = [(503, "1")]
    holder.close()
    await receiver.start()
    try:
        [call] = await receiver.wait_for(1, "/a")
    finally:
        await receiver.stop()
    [delivery] = await deliveries(jobs, endpoint)
    assert receiver.rejected == []
    assert [c.status for c in receiver.calls] == [503, 200]
    assert {c.id for c in receiver.calls} == {delivery["id"]}
    assert call.payload["type"] == "job.created" and call.payload["data"]["id"] == job["id"]
    assert receiver.calls[1].at - receiver.calls[0].at >= 0.9, "Retry-After: 1 not honoured"
    assert delivery["status"] == "DELIVERED"
    codes = [a["statusCode"] for a in delivery["attempts"]]
    assert codes[-2:] == [503, 200] and set(codes[:-2]) == {None}


async def test_a_disabled_endpoint_gets_nothing(
    gateway: Server, jobs: JobsClient, receiver: Receiver
) -> None:
    events = ["JOB_CREATED", "JOB_COMPLETED", "JOB_DELETED"]
    await add_endpoint(jobs, receiver, "/on", events)
    off = await add_endpoint(jobs, receiver, "/off", events)
    changed = await jobs.graphql(UPDATE_ENDPOINT, id=off["id"], enabled=False)
    assert (changed["enabled"], changed["disabledReason"]) == (False, "disabled by the tenant")
    job = await jobs.create()
    await jobs.report(job, 10, "COMPLETED")
    await jobs.delete(job)
    calls = await receiver.wait_for(3, "/on")
    await settle(gateway)
    assert await deliveries(jobs, off) == []
    assert sorted(c.payload["type"] for c in calls) == [
        "job.completed",
        "job.created",
        "job.deleted",
    ]
    assert [c.path for c in receiver.calls] == ["/on"] * 3


async def test_progress_is_opt_in_and_coalesced_to_the_latest(
    gateway: Server, jobs: JobsClient, receiver: Receiver
) -> None:
    # The gateway runs with WEBHOOK_PROGRESS_INTERVAL=1.
    server = gateway
    await add_endpoint(jobs, receiver, "/progress", ["JOB_PROGRESS"])
    await add_endpoint(jobs, receiver, "/plain", ["JOB_COMPLETED"])
    job = await jobs.create()
    for progress in range(10, 100, 10):
        await jobs.report(job, progress)
    # The first at once, the rest coalesced: one a second at most, the last 90 %.
    for _ in range(LIMIT * 10):
        calls = receiver.accepted("/progress")
        if calls and calls[-1].payload["data"]["progress"] == 90:
            break
        await asyncio.sleep(0.1)
    await jobs.report(job, 95, "COMPLETED")
    await receiver.wait_for(1, "/plain")
    await settle(server)
    progresses = [c.payload["data"]["progress"] for c in calls]
    assert progresses[0] == 10 and progresses[-1] == 90 and progresses == sorted(progresses)
    # Nine reports in well under a second each: at most three deliveries.
    assert 2 <= len(progresses) <= 3, progresses
    assert all(b.at - a.at >= 0.9 for a, b in itertools.pairwise(calls))
    assert receiver.accepted("/progress") == calls


@pytest.mark.engines("sqlite")
async def test_an_endpoint_failing_every_attempt_is_disabled_saying_why(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # The whole schedule (about 27 hours at scale 1) in about two seconds.
    env = gateway_env(database_url, WEBHOOK_RETRY_SCALE="0.00002")
    server = start_server(env, tmp_path / "gateway.log", timeout=START)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=LIMIT) as http:
            jobs = JobsClient(http)
            endpoint = await add_endpoint(jobs, receiver, "/broken", ["JOB_CREATED"])
            receiver.answers = [(500, None)] * 100
            await jobs.create()
            for _ in range(LIMIT * 10):
                [found] = await endpoints(jobs)
                if not found["enabled"]:
                    break
                await asyncio.sleep(0.1)
            [delivery] = await deliveries(jobs, endpoint)
            # Disabled: the next job is not even recorded for it.
            await jobs.create()
            await settle(server)
            assert len(await deliveries(jobs, endpoint)) == 1
    finally:
        server.stop()
    assert found["enabled"] is False
    assert "all 8 attempts" in found["disabledReason"] and "HTTP 500" in found["disabledReason"]
    assert delivery["status"] == "FAILED"
    assert [a["statusCode"] for a in delivery["attempts"]] == [500] * 8
    assert len(receiver.calls) == 8


async def test_a_finish_committed_by_a_process_that_died_before_delivering_is_delivered_after_restart(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    # The test hook exits (as SIGKILL would: no cleanup) right after the commit of a
    # change that finishes a job, before anything else runs.
    env = gateway_env(database_url)
    dying = start_server(
        {**env, "TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH": "1"},
        tmp_path / "dying.log",
        timeout=START,
    )
    try:
        async with httpx.AsyncClient(base_url=dying.url, timeout=LIMIT) as http:
            jobs = JobsClient(http)
            await add_endpoint(jobs, receiver, "/a", ["JOB_COMPLETED"])
            job = await jobs.create()
            with pytest.raises(httpx.TransportError):
                await jobs.report(job, 10, "COMPLETED")
        assert dying.process.wait(LIMIT) == EXIT_BEFORE_PUBLISH
    finally:
        dying.stop()
    assert receiver.calls == []
    restarted = start_server(env, tmp_path / "restarted.log", timeout=START)
    try:
        [call] = await receiver.wait_for(1, "/a")
        await settle(restarted)
    finally:
        restarted.stop()
    assert call.payload["type"] == "job.completed"
    assert (call.payload["data"]["id"], call.payload["data"]["status"]) == (job["id"], 1)
    assert len(receiver.calls) == 1


@pytest.mark.engines("postgresql")
async def test_three_workers_deliver_each_event_once(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    redis = os.environ.get("REDIS_URL")
    if not redis:
        pytest.skip("REDIS_URL is not set: --workers 3 needs a broker")
    env = gateway_env(database_url, BROADCAST_URL=redis)
    server = start_server(env, tmp_path / "gateway.log", args=("--workers", "3"), timeout=START)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=LIMIT) as http:
            jobs = JobsClient(http)
            await add_endpoint(jobs, receiver, "/a", ["JOB_CREATED", "JOB_COMPLETED"])
            created = await asyncio.gather(*(jobs.create() for _ in range(20)))
            await asyncio.gather(*(jobs.report(job, 10, "COMPLETED") for job in created))
            calls = await receiver.wait_for(40, "/a")
            # Every worker polls several times more: a second claim would show now.
            await asyncio.sleep(1.0)
    finally:
        server.stop()
    assert len(receiver.calls) == 40
    assert len({c.id for c in calls}) == 40
    seen = Counter((c.payload["data"]["id"], c.payload["type"]) for c in calls)
    assert set(seen.values()) == {1}
    assert {job_id for job_id, _ in seen} == {job["id"] for job in created}
