"""Subscriptions over HTTP: graphql-sse (both modes) and Apollo multipart, against a real
uvicorn process, with the real clients (npm `graphql-sse`, @apollo/client's HttpLink)
and, where the wire itself is asserted, raw HTTP (httpx).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from support.servers import ROOT, Server, start_server
from tests.jobs_client import JobsClient
from tests.tokens import SECRET, auth_settings, bearer, token
from tests.tokens import gateway as in_process
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES

pytestmark = pytest.mark.anyio

# No test here waits this long unless something is broken; it keeps a failure from hanging.
LIMIT = 30
MAX_SUBSCRIPTIONS = 16
SSE = "text/event-stream"
MULTIPART = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'
TOKEN_HEADER = "X-GraphQL-Event-Stream-Token"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("http-subscriptions")
    running = start_server(
        {
            "DATABASE_URL": f"sqlite:///{folder}/jobs.db",
            "AUTH_JWT_SECRET": SECRET,
            "MAX_SUBSCRIPTIONS_PER_CONNECTION": str(MAX_SUBSCRIPTIONS),
        },
        folder / "server.log",
    )
    yield running
    running.stop()


@pytest.fixture
async def jobs(gateway: Server) -> AsyncIterator[JobsClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as http:
        yield JobsClient(http, token())


# -- the real clients ------------------------------------------------------------


class NodeClient:
    """A node script printing one JSON line per event (tests/*_subscribe.mjs)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, script: str, *args: str) -> NodeClient:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not on PATH: the graphql-sse and Apollo clients need Node.js")
        for package in ("graphql-sse", "@apollo/client"):
            if not (ROOT / "node_modules" / package).is_dir():
                pytest.skip(f"node_modules/{package} is missing: run `npm ci` at the top")
        process = await asyncio.create_subprocess_exec(
            node, str(ROOT / "tests" / script), *args, stdout=asyncio.subprocess.PIPE
        )
        return cls(process)

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        printed: dict[str, Any] = json.loads(await self.process.stdout.readline())
        return printed

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def graphql_sse(
    gateway: Server, query: str, variables: dict[str, Any], mode: str, bearer_token: str
) -> NodeClient:
    return await NodeClient.start(
        "graphql_sse_subscribe.mjs",
        gateway.url + "/graphql",
        query,
        json.dumps(variables),
        mode,
        bearer_token,
    )


async def apollo(
    gateway: Server, query: str, variables: dict[str, Any], bearer_token: str
) -> NodeClient:
    return await NodeClient.start(
        "apollo_http_subscribe.mjs",
        gateway.url + "/graphql",
        query,
        json.dumps(variables),
        bearer_token,
    )


def without_typename(value: Any) -> Any:
    """Apollo adds `__typename` to every selection."""
    if isinstance(value, dict):
        return {k: without_typename(v) for k, v in value.items() if k != "__typename"}
    return value


async def started(client: NodeClient, job: dict[str, Any], apollo_link: bool) -> None:
    """The subscription's first event: the job as it is now (the snapshot)."""
    first = await client.line()
    if apollo_link:
        assert without_typename(first["next"]["data"]) == {"jobProgress": job}
    else:
        assert first == {"next": {"data": {"jobProgress": job}}}


@pytest.mark.parametrize("mode", ["distinct", "single"])
async def test_graphql_sse_follows_a_job_to_its_end_and_hears_not_found(
    gateway: Server, jobs: JobsClient, mode: str
) -> None:
    job = await jobs.create()
    unknown = str(uuid.uuid4())
    following = await graphql_sse(gateway, JOB_PROGRESS, {"id": job["id"]}, mode, token())
    refused = await graphql_sse(gateway, JOB_PROGRESS, {"id": unknown}, mode, token())
    try:
        with anyio.fail_after(LIMIT):
            await started(following, job, apollo_link=False)
            changes = [await jobs.report(job, 40), await jobs.report(job, 40, "COMPLETED")]
            for change in changes:
                assert await following.line() == {"next": {"data": {"jobProgress": change}}}
            assert await following.line() == {"complete": True}
            assert await following.process.wait() == 0

            error = (await refused.line())["next"]
            assert error["data"] is None
            assert [e["extensions"]["code"] for e in error["errors"]] == ["NOT_FOUND"]
            assert await refused.line() == {"complete": True}
    finally:
        await following.stop()
        await refused.stop()


async def test_apollo_http_link_follows_a_job_to_its_end(gateway: Server, jobs: JobsClient) -> None:
    job = await jobs.create()
    following = await apollo(gateway, JOB_PROGRESS, {"id": job["id"]}, token())
    try:
        with anyio.fail_after(LIMIT):
            await started(following, job, apollo_link=True)
            changes = [await jobs.report(job, 40), await jobs.report(job, 40, "FAILED")]
            for change in changes:
                event = await following.line()
                assert without_typename(event["next"]["data"]) == {"jobProgress": change}
            assert await following.line() == {"complete": True}
    finally:
        await following.stop()


async def test_a_stream_ends_when_its_token_expires(gateway: Server, jobs: JobsClient) -> None:
    """With each client at once (one wait for the token to expire)."""
    job = await jobs.create()
    # Long enough for the clients to start on a busy machine; served while valid.
    short = token(scope="jobs:read", ttl=6)
    variables = {"id": job["id"]}
    clients = {
        "distinct": await graphql_sse(gateway, JOB_PROGRESS, variables, "distinct", short),
        "single": await graphql_sse(gateway, JOB_PROGRESS, variables, "single", short),
        "apollo": await apollo(gateway, JOB_PROGRESS, variables, short),
    }
    expired = {"message": "token has expired", "extensions": {"code": "UNAUTHENTICATED"}}
    try:
        with anyio.fail_after(LIMIT):
            for name, client in clients.items():
                await started(client, job, apollo_link=name == "apollo")
            for name, client in clients.items():
                ending = await client.line()
                if name == "apollo":
                    # A transport error, {"payload": null, "errors": [...]}: Apollo Client 4
                    # reports it as the subscription's error, then completes.
                    error = ending["next"]["error"]
                    assert error["name"] == "CombinedProtocolErrors", ending
                    assert error["errors"] == [expired]
                else:
                    assert ending == {"next": {"errors": [expired]}}
                assert await client.line() == {"complete": True}
    finally:
        for client in clients.values():
            await client.stop()


# -- the wire, read raw ------------------------------------------------------------


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) of each event of a text/event-stream; comments (heartbeats) skipped."""
    event, data = "", ""
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "" and event:
            yield event, json.loads(data) if data else None
            event, data = "", ""


async def test_refused_before_the_stream_starts_without_a_valid_token(gateway: Server) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as http:
        for accept in (SSE, MULTIPART):
            for headers in ({}, bearer("not-a-token")):
                response = await http.post(
                    "/graphql",
                    json={"query": JOB_UPDATES},
                    headers={"accept": accept, **headers},
                )
                assert response.status_code == 401
                # The same challenge as GraphQL over HTTP and REST (app.auth.challenge):
                # a token that was sent and refused is `invalid_token`, a missing one is not.
                challenge = response.headers["www-authenticate"]
                assert challenge.startswith('Bearer realm="jobs"')
                assert ('error="invalid_token"' in challenge) == bool(headers)
                error = response.json()["errors"][0]
                assert error["extensions"]["code"] == "UNAUTHENTICATED"
        reserve = await http.put("/graphql")
        assert reserve.status_code == 401


async def test_a_stream_runs_queries_and_reports_bad_documents_in_the_stream(
    gateway: Server,
) -> None:
    headers = {"accept": SSE, **bearer(token())}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as http:
        async with http.stream(
            "GET", "/graphql", params={"query": "{ __typename }"}, headers=headers
        ) as response:
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            events = [event async for event in sse_events(response)]
        assert events == [("next", {"data": {"__typename": "Query"}}), ("complete", None)]

        async with http.stream(
            "POST",
            "/graphql",
            json={"query": "subscription { jobUpdates { nope } }"},
            headers=headers,
        ) as response:
            assert response.status_code == 200  # graphql-sse: validation errors in the stream
            events = [event async for event in sse_events(response)]
        assert [name for name, _ in events] == ["next", "complete"]
        assert events[0][1]["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_single_connection_reservations(gateway: Server, jobs: JobsClient) -> None:
    job = await jobs.create()
    auth = bearer(token())
    async with httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as http:
        reserved = await http.put("/graphql", headers=auth)
        assert reserved.status_code == 201
        ticket = {TOKEN_HEADER: reserved.text}

        def operation(op_id: str, query: str = JOB_PROGRESS) -> dict[str, Any]:
            return {
                "query": query,
                "variables": {"id": job["id"]},
                "extensions": {"operationId": op_id},
            }

        # Operations wait for the stream to be open.
        early = await http.post("/graphql", json=operation("a"), headers=ticket)
        assert early.status_code == 409
        unknown = await http.post("/graphql", json=operation("a"), headers={TOKEN_HEADER: "x"})
        assert unknown.status_code == 404
        with anyio.fail_after(LIMIT):
            async with http.stream(
                "GET", "/graphql", params={"token": reserved.text}, headers={"accept": SSE}
            ) as stream:
                again = await http.get(
                    "/graphql", params={"token": reserved.text}, headers={"accept": SSE}
                )
                assert again.status_code == 409  # one stream per reservation
                events = sse_events(stream)
                for op_id in ("a", "b"):
                    posted = await http.post("/graphql", json=operation(op_id), headers=ticket)
                    assert posted.status_code == 202
                    assert await anext(events) == (
                        "next",
                        {"id": op_id, "payload": {"data": {"jobProgress": job}}},
                    )
                taken = await http.post("/graphql", json=operation("a"), headers=ticket)
                assert taken.status_code == 409
                missing = await http.post(
                    "/graphql", json={"query": JOB_PROGRESS, "variables": {}}, headers=ticket
                )
                assert missing.status_code == 400
                assert "operationId" in missing.json()["errors"][0]["message"]
                other = await jobs.create()
                updates = {"query": JOB_UPDATES, "extensions": {"operationId": "c"}}
                assert (
                    await http.post("/graphql", json=updates, headers=ticket)
                ).status_code == 202
                # Up to the limit with operations the change below does not concern.
                for n in range(MAX_SUBSCRIPTIONS - 3):
                    filler = {**operation(f"f{n}"), "variables": {"id": other["id"]}}
                    posted = await http.post("/graphql", json=filler, headers=ticket)
                    assert posted.status_code == 202
                    assert (await anext(events))[1]["id"] == f"f{n}"
                over = {"query": JOB_UPDATES, "extensions": {"operationId": "over"}}
                refused = await http.post("/graphql", json=over, headers=ticket)
                assert refused.status_code == 429
                assert refused.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"

                stopped = await http.delete("/graphql", params={"operationId": "a"}, headers=ticket)
                assert stopped.status_code == 200
                change = await jobs.report(job, 60, "COMPLETED")
                heard = [await anext(events) for _ in range(3)]
                assert sorted(heard, key=lambda e: (e[0], e[1]["id"])) == [
                    ("complete", {"id": "b"}),
                    ("next", {"id": "b", "payload": {"data": {"jobProgress": change}}}),
                    ("next", {"id": "c", "payload": {"data": {"jobUpdates": change}}}),
                ]


async def test_a_client_that_stops_reading_gets_where_the_job_is_now(
    gateway: Server, jobs: JobsClient
) -> None:
    """Its frames wait in a bounded buffer, the latest state per job; others go on."""
    job = await jobs.create(inputs=[str(uuid.uuid4()) for _ in range(100)])
    ops = [f"s{n}" for n in range(MAX_SUBSCRIPTIONS)]
    reports = 250
    auth = bearer(token())
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as stalled_http,
        httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as reader_http,
    ):
        ticket = {TOKEN_HEADER: (await stalled_http.put("/graphql", headers=auth)).text}
        request = {"query": JOB_PROGRESS, "variables": {"id": job["id"]}}
        with anyio.fail_after(LIMIT * 3):
            async with (
                stalled_http.stream(
                    "GET", "/graphql", headers={"accept": SSE, **ticket}
                ) as stalled,
                reader_http.stream(
                    "POST", "/graphql", json=request, headers={"accept": SSE, **auth}
                ) as reading,
            ):
                reader = sse_events(reading)
                assert await anext(reader) == ("next", {"data": {"jobProgress": job}})
                for op in ops:
                    extensions = {"operationId": op}
                    posted = await stalled_http.post(
                        "/graphql", json={**request, "extensions": extensions}, headers=ticket
                    )
                    assert posted.status_code == 202
                # `stalled` reads nothing until the end; the reader hears every change.
                changes = []
                for n in range(reports):
                    changes.append(await jobs.report(job, n // 3))
                    assert await anext(reader) == ("next", {"data": {"jobProgress": changes[-1]}})
                changes.append(await jobs.report(job, 99, "COMPLETED"))
                assert await anext(reader) == ("next", {"data": {"jobProgress": changes[-1]}})
                assert await anext(reader) == ("complete", None)

                seen: dict[str, list[Any]] = {op: [] for op in ops}
                done: set[str] = set()
                async for event, data in sse_events(stalled):
                    if event == "complete":
                        done.add(data["id"])
                        if done == set(ops):
                            break
                    else:
                        seen[data["id"]].append(data["payload"]["data"]["jobProgress"])
    for states in seen.values():
        assert states[-1] == changes[-1]
        assert len(states) < reports  # caught up on where the job is, not every step
        assert [s["updatedAt"] for s in states] == sorted(s["updatedAt"] for s in states)


async def test_apollo_multipart_wire_format(gateway: Server, jobs: JobsClient) -> None:
    job = await jobs.create()
    request = {"query": JOB_PROGRESS, "variables": {"id": job["id"]}}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as http:
        with anyio.fail_after(LIMIT):
            async with http.stream(
                "POST", "/graphql", json=request, headers={"accept": MULTIPART, **bearer(token())}
            ) as response:
                assert response.headers["content-type"] == (
                    'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"'
                )
                chunks = response.aiter_bytes()
                body = b""
                while b'"progress":0' not in body:
                    body += await anext(chunks)
                change = await jobs.report(job, 100, "COMPLETED")
                async for chunk in chunks:
                    body += chunk
    text = body.decode()
    assert text.startswith("--graphql\r\n") and text.endswith("\r\n--graphql--\r\n")
    parts = [
        json.loads(part.split("\r\n\r\n", 1)[1])
        for part in text.removesuffix("--\r\n").split("\r\n--graphql")
        if "\r\n\r\n" in part
    ]
    payloads = [part["payload"] for part in parts if part]  # {} is a heartbeat
    assert payloads == [{"data": {"jobProgress": job}}, {"data": {"jobProgress": change}}]


async def test_stream_limit_and_shutdown(tmp_path: Path) -> None:
    """Past MAX_HTTP_STREAMS a stream is 503; SIGTERM completes the open ones and ends
    every response (a single connection stream with no operation too)."""
    server = start_server(
        {"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", "MAX_HTTP_STREAMS": "3"},
        tmp_path / "log",
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=LIMIT) as http:
            job = await JobsClient(http).create()
            request = {"query": JOB_PROGRESS, "variables": {"id": job["id"]}}
            reservation = (await http.put("/graphql")).text
            with anyio.fail_after(LIMIT):
                async with (
                    http.stream("POST", "/graphql", json=request, headers={"accept": SSE}) as sse,
                    http.stream(
                        "POST", "/graphql", json=request, headers={"accept": MULTIPART}
                    ) as multipart,
                    http.stream(
                        "GET", "/graphql", headers={"accept": SSE, TOKEN_HEADER: reservation}
                    ) as idle,
                ):
                    events = sse_events(sse)
                    assert await anext(events) == ("next", {"data": {"jobProgress": job}})
                    chunks = multipart.aiter_bytes()
                    first = await anext(chunks)
                    refused = await http.post("/graphql", json=request, headers={"accept": SSE})
                    assert refused.status_code == 503
                    assert refused.headers["retry-after"] == "5"
                    assert "MAX_HTTP_STREAMS" in refused.json()["errors"][0]["message"]
                    assert (await http.put("/graphql")).status_code == 503

                    server.process.terminate()
                    assert [event async for event in events] == [("complete", None)]
                    rest = first + b"".join([chunk async for chunk in chunks])
                    assert rest.endswith(b"\r\n--graphql--\r\n")
                    assert [event async for event in sse_events(idle)] == []
        # uvicorn re-raises the signal once it has shut down: death by SIGTERM is clean.
        assert await anyio.to_thread.run_sync(server.process.wait) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log, log


def test_a_browser_on_an_allowed_origin_may_use_single_connection_mode(tmp_path: Path) -> None:
    """CORS: graphql-sse's PUT and its token header pass the preflight."""
    origin = "https://app.example.test"
    with in_process(auth_settings(tmp_path, cors_origins=(origin,))) as client:
        preflight = client.options(
            "/graphql",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization, x-graphql-event-stream-token",
            },
        )
        assert preflight.status_code == 200
        assert "PUT" in preflight.headers["access-control-allow-methods"]
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "x-graphql-event-stream-token" in allowed
        reserved = client.put("/graphql", headers={"Origin": origin, **bearer(token())})
        assert reserved.status_code == 201
        assert reserved.headers["access-control-allow-origin"] == origin
