"""jobProgress and jobUpdates over WebSocket: a real uvicorn process, real clients.

Each test runs with both subprotocols (`graphql-transport-ws` and the legacy
`graphql-ws`) and asserts the messages exactly. Changes are made through the
public API (GraphQL mutations, REST), as encoder workers and frontends make them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from app.settings import Settings
from support.servers import ROOT, Server, start_server
from tests.jobs_client import JobsClient
from tests.jobs_data import INPUT, PROFILE
from tests.wsclient import (
    JOB_PROGRESS,
    JOB_UPDATES,
    LEGACY_WS,
    PROTOCOLS,
    TRANSPORT_WS,
    graphql_socket,
)

pytestmark = pytest.mark.anyio

# No test here waits this long unless something is broken; it keeps a failure from hanging.
LIMIT = 30


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests of this module that do not stop it (starting one takes seconds)."""
    folder = tmp_path_factory.mktemp("subscriptions")
    running = start_server({"DATABASE_URL": f"sqlite:///{folder}/jobs.db"}, folder / "server.log")
    yield running
    running.stop()


@pytest.fixture
async def jobs(gateway: Server) -> AsyncIterator[JobsClient]:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        yield JobsClient(http)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("how", ["COMPLETED", "FAILED", "deleted"])
async def test_job_progress_sends_the_job_then_each_change_and_completes_when_it_ends(
    gateway: Server, jobs: JobsClient, protocol: str, how: str
) -> None:
    job = await jobs.report(await jobs.create(), 10)
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("1", JOB_PROGRESS, id=job["id"])
            assert await ws.job("1") == job  # the current state first
            changes = [await jobs.report(job, 20), await jobs.report(job, 30)]
            changes.append(await jobs.end(job, how))
            assert await ws.until_complete("1") == changes

    last = changes[-1]
    if how == "COMPLETED":
        assert (last["status"], last["statusCode"], last["progress"]) == ("COMPLETED", 1, 100)
    elif how == "FAILED":
        assert (last["status"], last["statusCode"], last["progress"]) == ("FAILED", 10, 35)
    else:
        assert last["deletedAt"] is not None and last["status"] == "IN_PROGRESS"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("how", ["COMPLETED", "FAILED", "deleted"])
async def test_a_job_that_has_ended_is_sent_once_then_completes(
    gateway: Server, jobs: JobsClient, protocol: str, how: str
) -> None:
    final = await jobs.end(await jobs.report(await jobs.create(), 10), how)
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("a", JOB_PROGRESS, id=final["id"])
            assert await ws.until_complete("a") == [final]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_unknown_job_is_a_not_found_error_message_and_the_socket_stays_open(
    gateway: Server, jobs: JobsClient, protocol: str
) -> None:
    unknown = str(uuid.uuid4())
    error = {
        "message": f"job {unknown} not found",
        "locations": [{"line": 1, "column": 29}],
        "path": ["jobProgress"],
        "extensions": {"code": "NOT_FOUND"},
    }
    job = await jobs.create()
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("x", JOB_PROGRESS, id=unknown)
            if protocol == TRANSPORT_WS:
                assert await ws.receive() == {"id": "x", "type": "error", "payload": [error]}
            else:
                assert await ws.receive() == {"type": "error", "id": "x", "payload": error}
            # The same connection goes on serving.
            await ws.subscribe("y", JOB_PROGRESS, id=job["id"])
            assert await ws.job("y") == job


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_malformed_id_is_bad_user_input(gateway: Server, protocol: str) -> None:
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("1", JOB_PROGRESS, id="not-a-uuid")
            message = await ws.receive()
    assert message["type"] == "error" and message["id"] == "1"
    errors = message["payload"] if protocol == TRANSPORT_WS else [message["payload"]]
    assert [error["extensions"]["code"] for error in errors] == ["BAD_USER_INPUT"]
    assert "$id" in errors[0]["message"]


async def test_subscribers_joining_while_a_worker_reports_miss_no_change(
    gateway: Server, jobs: JobsClient
) -> None:
    """Whenever a client joins, it gets the state of that moment, then every later one."""
    job = await jobs.create()
    last_progress = 59
    reached = [asyncio.Event() for _ in range(last_progress + 1)]
    reached[0].set()

    async def worker() -> None:
        for progress in range(1, last_progress + 1):
            await jobs.report(job, progress)
            reached[progress].set()
        await jobs.report(job, last_progress, "COMPLETED")

    async def subscriber(joins_at: int, protocol: str) -> list[int]:
        await reached[joins_at].wait()
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("1", JOB_PROGRESS, id=job["id"])
            return [seen["progress"] for seen in await ws.until_complete("1")]

    with anyio.fail_after(LIMIT):
        joining = [(at, PROTOCOLS[i % 2]) for i, at in enumerate((0, 5, 17, 30, 44, 58))]
        watching = asyncio.gather(*(subscriber(at, p) for at, p in joining))
        _, results = await asyncio.gather(worker(), watching)

    for (joins_at, _), seen in zip(joining, results, strict=True):
        first = seen[0]
        assert first >= joins_at
        # The snapshot, then each report after it exactly once, in order, then the end.
        assert seen == [*range(first, last_progress + 1), 100], (joins_at, seen)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_job_updates_sends_what_matches_after_each_change_and_deletions_to_former_matches(
    gateway: Server, jobs: JobsClient, protocol: str
) -> None:
    video, other_video = str(uuid.uuid4()), str(uuid.uuid4())
    filters = {
        # Every job matches; the test looks at its own videos only (the server is shared).
        "all": None,
        "video": {"video": video},
        "completed": {"status": "COMPLETED", "video": video},
        "with deleted": {"video": video, "includeDeleted": True},
        "other video": {"video": other_video},
    }
    barrier = await jobs.create()
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            for name, job_filter in filters.items():
                await ws.subscribe(name, JOB_UPDATES, filter=job_filter)
            # jobUpdates sends nothing at first; a later subscription's first message
            # comes once the server has set up the ones before it.
            await ws.subscribe("ready", JOB_PROGRESS, id=barrier["id"])
            assert await ws.job("ready") == barrier

            created = await jobs.create(video)
            progressed = await jobs.report(created, 50)
            deleted = await jobs.delete(created)
            # REST changes are heard the same way.
            rest = await jobs.http.post(
                "/encoding/jobs", json={"inputs": [INPUT], "profile": PROFILE, "video": video}
            )
            assert rest.status_code == 201
            second_id = rest.json()["id"]
            completed = await jobs.report({"id": second_id}, 10, "COMPLETED")
            created_second = {**completed, "status": "IN_PROGRESS", "statusCode": 0}
            created_second.update(progress=0, updatedAt=completed["createdAt"])

            expected = {
                "all": [created, progressed, deleted, created_second, completed],
                "video": [created, progressed, deleted, created_second, completed],
                "completed": [completed],
                "with deleted": [created, progressed, deleted, created_second, completed],
                "other video": [],
            }
            # The second job's completion is the last change: every subscriber that will
            # hear of anything has heard all of it once it arrives everywhere it should.
            received: dict[str, list[dict[str, Any]]] = {name: [] for name in filters}
            waiting = {name for name, jobs in expected.items() if jobs}
            while waiting:
                message = await ws.receive()
                assert message["type"] == ws.next_type, message
                job = message["payload"]["data"]["jobUpdates"]
                if job["video"] in (video, other_video):
                    received[message["id"]].append(job)
                if job == completed:
                    waiting.discard(message["id"])

    assert received == expected


async def test_a_subscriber_that_stops_reading_does_not_delay_the_others(
    gateway: Server, jobs: JobsClient
) -> None:
    # Big messages (100 inputs, no compression), many subscriptions on the stalled
    # connection: its buffers (a few MB in the kernel) fill after some dozens of reports.
    job = await jobs.create(inputs=[str(uuid.uuid4()) for _ in range(100)])
    stalled_ops = [f"s{n}" for n in range(16)]
    reports = 250
    with anyio.fail_after(LIMIT * 3):
        async with (
            graphql_socket(
                gateway.ws_url, compression=None, max_queue=1, ping_interval=None
            ) as stalled,
            graphql_socket(gateway.ws_url, LEGACY_WS) as reader,
        ):
            for op in stalled_ops:
                await stalled.subscribe(op, JOB_PROGRESS, id=job["id"])
                assert await stalled.job(op) == job
            await reader.subscribe("1", JOB_PROGRESS, id=job["id"])
            assert await reader.job("1") == job
            # `stalled` reads nothing more until the end. The other subscriber gets
            # every change while the reports go on.
            changes = []
            for n in range(reports):
                changes.append(await jobs.report(job, n // 3))
                assert await reader.job("1") == changes[-1]
            changes.append(await jobs.report(job, 99, "COMPLETED"))
            assert await reader.until_complete("1") == [changes[-1]]

            # Reading again, each stalled subscription catches up on where the job is
            # now: the final state after what the buffers held, not every change.
            caught_up: dict[str, list[dict[str, Any]]] = {op: [] for op in stalled_ops}
            while any(not seen or seen[-1] != {} for seen in caught_up.values()):
                message = await stalled.receive()
                if message["type"] == "complete":
                    caught_up[message["id"]].append({})
                else:
                    caught_up[message["id"]].append(message["payload"]["data"]["jobProgress"])
    for seen in caught_up.values():
        seen.pop()  # the `complete`
        assert seen[-1] == changes[-1]
        assert len(seen) < reports
        assert [state["updatedAt"] for state in seen] == sorted(s["updatedAt"] for s in seen)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stopping_a_subscription_ends_it_alone(
    gateway: Server, jobs: JobsClient, protocol: str
) -> None:
    job = await jobs.create()
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("a", JOB_PROGRESS, id=job["id"])
            await ws.subscribe("b", JOB_PROGRESS, id=job["id"])
            assert {(await ws.receive())["id"], (await ws.receive())["id"]} == {"a", "b"}
            await ws.stop("a")
            if protocol == LEGACY_WS:  # the legacy protocol confirms a stop
                assert await ws.receive() == {"type": "complete", "id": "a"}
            changed = await jobs.report(job, 40)
            assert await ws.job("b") == changed


async def test_shutdown_completes_open_subscriptions(tmp_path: Path) -> None:
    server = start_server({"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db"}, tmp_path / "log")
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            job = await JobsClient(http).create()
        with anyio.fail_after(LIMIT):
            async with (
                graphql_socket(server.ws_url, TRANSPORT_WS) as current,
                graphql_socket(server.ws_url, LEGACY_WS) as legacy,
            ):
                for ws in (current, legacy):
                    await ws.subscribe("progress", JOB_PROGRESS, id=job["id"])
                    assert await ws.job("progress") == job
                    await ws.subscribe("updates", JOB_UPDATES)
                server.process.terminate()
                for ws in (current, legacy):
                    ended = [await ws.receive(), await ws.receive()]
                    assert sorted((m["type"], m["id"]) for m in ended) == [
                        ("complete", "progress"),
                        ("complete", "updates"),
                    ]
        await anyio.to_thread.run_sync(server.process.wait)
    finally:
        server.stop()
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log, log


async def test_the_reference_graphql_ws_client_follows_a_job_and_hears_not_found(
    gateway: Server, jobs: JobsClient
) -> None:
    """npm `graphql-ws` (the graphql-transport-ws reference client) on the `ws` package."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the reference graphql-ws client needs Node.js")
    if not (ROOT / "node_modules" / "graphql-ws").is_dir():
        pytest.skip("node_modules/graphql-ws is missing: run `npm ci` at the top")
    script = str(ROOT / "tests" / "graphql_ws_subscribe.mjs")

    async def follow(job_id: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            node,
            script,
            gateway.ws_url,
            JOB_PROGRESS,
            json.dumps({"id": job_id}),
            stdout=asyncio.subprocess.PIPE,
        )

    async def line(process: asyncio.subprocess.Process) -> dict[str, Any]:
        assert process.stdout is not None
        printed: dict[str, Any] = json.loads(await process.stdout.readline())
        return printed

    job = await jobs.create()
    unknown = str(uuid.uuid4())
    following, refused = await follow(job["id"]), await follow(unknown)
    try:
        with anyio.fail_after(LIMIT):
            assert await line(following) == {"next": {"data": {"jobProgress": job}}}
            changes = [await jobs.report(job, 50), await jobs.report(job, 50, "COMPLETED")]
            for change in changes:
                assert await line(following) == {"next": {"data": {"jobProgress": change}}}
            assert await line(following) == {"complete": True}
            assert await following.wait() == 0

            error = await line(refused)
            assert [e["extensions"]["code"] for e in error["error"]] == ["NOT_FOUND"]
            assert error["error"][0]["message"] == f"job {unknown} not found"
            assert await refused.wait() == 0
    finally:
        for process in (following, refused):
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_subscribers_of_one_change_each_get_what_they_asked_for(
    gateway: Server, jobs: JobsClient
) -> None:
    """One change's result is computed once per distinct question, and never mixed up."""
    job = await jobs.create()
    other = await jobs.create()
    few = "subscription ($id: UUID!) { jobProgress(id: $id) { id progress } }"
    aliased = "subscription ($id: UUID!) { p: jobProgress(id: $id) { percent: progress } }"
    with anyio.fail_after(LIMIT):
        async with (
            graphql_socket(gateway.ws_url, TRANSPORT_WS) as current,
            graphql_socket(gateway.ws_url, LEGACY_WS) as legacy,
        ):
            for ws in (current, legacy):
                await ws.subscribe("all", JOB_PROGRESS, id=job["id"])
                await ws.subscribe("few", few, id=job["id"])
                await ws.subscribe("aliased", aliased, id=job["id"])
                await ws.subscribe("other", JOB_PROGRESS, id=other["id"])
                firsts = [await ws.receive() for _ in range(4)]
                assert sorted(m["id"] for m in firsts) == ["aliased", "all", "few", "other"]
            changed = await jobs.report(job, 42)
            for ws in (current, legacy):
                heard = {
                    m["id"]: m["payload"]["data"] for m in [await ws.receive() for _ in range(3)]
                }
                assert heard == {
                    "all": {"jobProgress": changed},
                    "few": {"jobProgress": {"id": job["id"], "progress": 42}},
                    "aliased": {"p": {"percent": 42}},
                }


async def test_a_query_over_the_legacy_protocol_is_refused_clearly(
    gateway: Server, jobs: JobsClient
) -> None:
    job = await jobs.create()
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, LEGACY_WS) as ws:
            await ws.subscribe("q", "{ jobs(first: 1) { totalCount } }")
            refused = await ws.receive()
            # The connection goes on serving subscriptions.
            await ws.subscribe("s", JOB_PROGRESS, id=job["id"])
            assert await ws.job("s") == job
    assert refused["type"] == "error" and refused["id"] == "q"
    assert refused["payload"]["extensions"] == {"code": "BAD_REQUEST"}
    assert refused["payload"]["message"] == (
        "queries are not served over the legacy graphql-ws protocol (subscriptions only): "
        "send them over HTTP or graphql-transport-ws"
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_fanned_out_path_and_strawberrys_send_the_same(
    gateway: Server, jobs: JobsClient, protocol: str
) -> None:
    """`jobProgress` is fanned out below strawberry; a directive sends it strawberry's way."""
    job = await jobs.create()
    by_strawberry = JOB_PROGRESS.replace("{ id ", "{ id @include(if: true) ", 1)
    assert by_strawberry != JOB_PROGRESS
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("fast", JOB_PROGRESS, id=job["id"])
            await ws.subscribe("strawberry", by_strawberry, id=job["id"])
            heard: dict[str, list[dict[str, Any]]] = {"fast": [], "strawberry": []}
            while not all(heard.values()):  # both snapshots first
                message = await ws.receive()
                heard[message["id"]].append(message["payload"]["data"]["jobProgress"])
            changes = [await jobs.report(job, 30), await jobs.report(job, 60, "COMPLETED")]
            open_ops = set(heard)
            while open_ops:
                message = await ws.receive()
                if message["type"] == "complete":
                    open_ops.remove(message["id"])
                else:
                    heard[message["id"]].append(message["payload"]["data"]["jobProgress"])
    assert heard == {"fast": [job, *changes], "strawberry": [job, *changes]}


async def tasks_running(gateway: Server) -> int:
    async with httpx.AsyncClient() as http:
        count: int = (await http.get(gateway.url + "/readyz")).json()["tasks"]
        return count


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_job_updates_fanned_out_and_by_strawberry_send_the_same(
    gateway: Server, jobs: JobsClient, protocol: str
) -> None:
    """`jobUpdates` too is fanned out (no task per subscription); a directive sends it
    strawberry's way, and both hear the same changes: what matches after each change,
    a deletion where the job matched before it, not a change that makes it stop matching."""
    video = str(uuid.uuid4())
    filters: dict[str, dict[str, Any] | None] = {
        "all": None,
        "video": {"video": video},
        "completed": {"video": video, "status": "COMPLETED"},
        "in progress": {"video": video, "status": "IN_PROGRESS"},
        "with deleted": {"video": video, "includeDeleted": True},
    }
    by_strawberry = JOB_UPDATES.replace("{ id ", "{ id @include(if: true) ", 1)
    assert by_strawberry != JOB_UPDATES
    barrier = await jobs.create()
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            before = await tasks_running(gateway)
            for name, job_filter in filters.items():
                await ws.subscribe(f"fast {name}", JOB_UPDATES, filter=job_filter)
                await ws.subscribe(f"strawberry {name}", by_strawberry, filter=job_filter)
            await ws.subscribe("ready", JOB_PROGRESS, id=barrier["id"])
            assert await ws.job("ready") == barrier
            # strawberry runs a task per subscription; the fanned-out ones hold none.
            # (With FAST_PATHS=false both are strawberry's: the rest must hold still.)
            if Settings().fast_paths:
                assert await tasks_running(gateway) - before < len(filters) + 3

            created = await jobs.create(video)
            progressed = await jobs.report(created, 50)
            other = await jobs.create(video)
            completed = await jobs.report(other, 10, "COMPLETED")
            other_deleted = await jobs.delete(other)
            deleted = await jobs.delete(created)
            # (A deletion is sent where the job matched before it; the completion is not
            # sent to "in progress": after it, the job no longer matches.)
            everything = [created, progressed, other, completed, other_deleted, deleted]
            expected = {
                "all": everything,
                "video": everything,
                "completed": [completed, other_deleted],
                "in progress": [created, progressed, other, deleted],
                "with deleted": everything,
            }
            heard: dict[str, list[dict[str, Any]]] = {
                f"{path} {name}": [] for path in ("fast", "strawberry") for name in filters
            }
            waiting = set(heard)
            while waiting:
                message = await ws.receive()
                assert message["type"] == ws.next_type, message
                job = message["payload"]["data"]["jobUpdates"]
                if job["video"] == video:
                    heard[message["id"]].append(job)
                    if job == expected[message["id"].split(" ", 1)[1]][-1]:
                        waiting.discard(message["id"])

    for name, jobs_expected in expected.items():
        assert heard[f"fast {name}"] == jobs_expected, name
        assert heard[f"strawberry {name}"] == jobs_expected, name
