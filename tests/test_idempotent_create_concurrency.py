"""Twenty creates with one idempotency key at once, through a real server and real
concurrent clients: one job is stored, every client gets it, and subscribers hear of
it once. REST and GraphQL, SQLite and PostgreSQL (there with two worker processes too)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from support.servers import Server, start_server
from tests.jobs_data import CREATE, new_uuid, request_object
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES, graphql_socket

pytestmark = pytest.mark.anyio

CLIENTS = 20
# No test here waits this long unless something is broken; it keeps a failure from hanging.
LIMIT = 60
CREATE_ONCE = CREATE.replace(
    "$input: CreateJobInput!", "$input: CreateJobInput!, $key: String"
).replace("createJob(input: $input)", "createJob(input: $input, idempotencyKey: $key)")
COUNT = "query($video: UUID!) { jobs(filter: {video: $video}) { totalCount } }"


def client(server: Server) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=CLIENTS)
    return httpx.AsyncClient(base_url=server.url, timeout=LIMIT, limits=limits)


async def rest_burst(server: Server, body: dict[str, Any], key: str) -> list[httpx.Response]:
    async with client(server) as http:
        return await asyncio.gather(
            *(
                http.post("/encoding/jobs", json=body, headers={"Idempotency-Key": key})
                for _ in range(CLIENTS)
            )
        )


async def stored(server: Server, video: str) -> int:
    async with client(server) as http:
        body = (
            await http.post("/graphql", json={"query": COUNT, "variables": {"video": video}})
        ).json()
    count: int = body["data"]["jobs"]["totalCount"]
    return count


def assert_one_first_answer_and_replays(responses: list[httpx.Response]) -> dict[str, Any]:
    assert [response.status_code for response in responses] == [201] * CLIENTS, [
        response.text for response in responses
    ]
    first: dict[str, Any] = responses[0].json()
    assert all(response.json() == first for response in responses)
    assert {response.headers["location"] for response in responses} == {first["url"]}
    replayed = [response.headers.get("idempotent-replayed") for response in responses]
    assert sorted(replayed, key=str) == [None] + ["true"] * (CLIENTS - 1)
    return first


async def test_twenty_creates_with_one_key_store_one_job_all_get_it_and_it_is_heard_once(
    server: Server,
) -> None:
    video, key, graphql_key = new_uuid(), str(uuid.uuid4()), str(uuid.uuid4())
    body = request_object(video=video)
    with anyio.fail_after(LIMIT):
        async with graphql_socket(server.ws_url) as ws, client(server) as http:
            await ws.subscribe("updates", JOB_UPDATES, filter={"video": video})
            # jobUpdates sends nothing at first: a later subscription's first message
            # comes once the server has set up the one before it.
            barrier = (await http.post("/encoding/jobs", json=request_object())).json()
            await ws.subscribe("ready", JOB_PROGRESS, id=barrier["id"])
            assert (await ws.job("ready"))["id"] == barrier["id"]

            # REST: one 201 first answer, nineteen replays of it.
            job = assert_one_first_answer_and_replays(await rest_burst(server, body, key))
            assert (job["status"], job["progress"], job["video"]) == (0, 0, video)
            other = request_object(video=video, inputs=[new_uuid()])
            refused = await http.post(
                "/encoding/jobs", json=other, headers={"Idempotency-Key": key}
            )
            assert refused.status_code == 409, refused.text
            error = refused.json()["error"]
            assert error["code"] == "CONFLICT" and repr(key) in error["message"]

            # GraphQL, with a key of its own: twenty times the same job.
            variables = {"input": body, "key": graphql_key}
            answers = await asyncio.gather(
                *(
                    http.post("/graphql", json={"query": CREATE_ONCE, "variables": variables})
                    for _ in range(CLIENTS)
                )
            )
            bodies = [answer.json() for answer in answers]
            assert all("errors" not in answer for answer in bodies), bodies
            created = [answer["data"]["createJob"] for answer in bodies]
            assert all(one == created[0] for one in created)
            assert (created[0]["status"], created[0]["progress"]) == ("IN_PROGRESS", 0)
            variables = {"input": other, "key": graphql_key}
            conflict = (
                await http.post("/graphql", json={"query": CREATE_ONCE, "variables": variables})
            ).json()
            assert conflict["data"] is None
            [error] = conflict["errors"]
            assert (
                error["extensions"]["code"] == "CONFLICT" and repr(graphql_key) in error["message"]
            )

            # A job created after them all, without a key: the subscriber hears each job
            # once, this one last, and not a second announcement of the others.
            marker = (await http.post("/encoding/jobs", json=body)).json()
            heard = [(await ws.job("updates"))["id"] for _ in range(3)]
            assert heard == [job["id"], created[0]["id"], marker["id"]]

            listed = (await http.get("/encoding/jobs", params={"video": video})).json()
            stored = [found["id"] for found in listed["jobs"]]
            assert stored == [marker["id"], created[0]["id"], job["id"]]


@pytest.fixture
def two_workers(database_url: str, tmp_path: Path) -> Iterator[Server]:
    # Both processes hear each other's changes through PostgreSQL's LISTEN/NOTIFY.
    broadcast = database_url.replace("postgresql://", "postgres://", 1)
    running = start_server(
        {"DATABASE_URL": database_url, "BROADCAST_URL": broadcast},
        tmp_path / "server.log",
        args=("--workers", "2"),
        timeout=60,  # two interpreters importing the app at once, on a busy machine
    )
    yield running
    running.stop()


@pytest.mark.engines("postgresql")
async def test_twenty_creates_with_one_key_across_two_processes_store_one_job(
    two_workers: Server,
) -> None:
    assert len(two_workers.workers()) == 2
    video, key = new_uuid(), str(uuid.uuid4())
    with anyio.fail_after(LIMIT):
        job = assert_one_first_answer_and_replays(
            await rest_burst(two_workers, request_object(video=video), key)
        )
        # GraphQL shares the key: the same job, from whichever process answers.
        async with client(two_workers) as http:
            variables = {"input": request_object(video=video), "key": key}
            body = (
                await http.post("/graphql", json={"query": CREATE_ONCE, "variables": variables})
            ).json()
        assert body["data"]["createJob"]["id"] == job["id"]
        assert await stored(two_workers, video) == 1
