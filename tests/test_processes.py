"""Several gateway processes on one database: `serve --workers N`, and two gateways
behind a load balancer on PostgreSQL with a Redis broadcast."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from support.servers import ROOT, Server, start_server
from tests.jobs_data import REPORT, request_object
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES, LEGACY_WS, graphql_socket

# Both gateways stand behind one address, so they give out the same job URLs.
PUBLIC_URL = "https://jobs.example.test"
# No test here waits this long unless something is broken; it keeps a failure from hanging.
LIMIT = 60


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    return url


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_workers_need_a_broadcast_every_process_hears(tmp_path: Path) -> None:
    result = serve(
        "--workers", "2", env={"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", "BROADCAST_URL": ""}
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "--workers 2 needs BROADCAST_URL at redis://" in result.stderr


@pytest.mark.parametrize("value", ["0", "two"])
def test_workers_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    result = serve("--workers", value, env={"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db"})
    assert result.returncode == 2
    assert "--workers: must be a whole number of at least 1" in result.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_with_workers_shares_one_port_and_one_database(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    server = start_server(
        {"DATABASE_URL": database_url, "BROADCAST_URL": redis_url, "DATABASE_POOL_SIZE": "2"},
        log,
        args=("--workers", "2"),
        timeout=60,  # two interpreters importing the app at once, on a busy machine
    )
    try:
        # A new connection per request, so the kernel spreads them over both workers.
        created = [
            httpx.post(server.url + "/encoding/jobs", json=request_object()).json()
            for _ in range(10)
        ]
        for job in created:
            assert httpx.get(job["url"]).json() == job
        listed = httpx.get(server.url + "/encoding/jobs", params={"limit": 100}).json()
        assert [job["id"] for job in listed["jobs"]] == [job["id"] for job in reversed(created)]
        workers = [
            int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log.read_text())
        ]
        assert len(workers) == 2, log.read_text()
        # Migrated once, by the command, before the workers started: never by a worker.
        assert log.read_text().count("database migrated") <= 1
    finally:
        server.stop()
    # Stopping the command stops its workers: none is left holding the port.
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers))


@pytest.fixture
def gateways(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    env = {"DATABASE_URL": database_url, "BROADCAST_URL": redis_url, "PUBLIC_URL": PUBLIC_URL}
    first = start_server(env, tmp_path / "first.log")
    try:
        second = start_server(env, tmp_path / "second.log")
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.mark.engines("postgresql")
@pytest.mark.anyio
async def test_a_job_made_on_one_gateway_is_read_changed_and_heard_on_the_other(
    gateways: tuple[Server, Server],
) -> None:
    first, second = gateways
    async with httpx.AsyncClient(timeout=LIMIT) as client:

        async def report(server: Server, progress: int, status: str | None = None) -> Any:
            variables = {"id": job["id"], "progress": progress, "status": status}
            response = await client.post(
                server.url + "/graphql", json={"query": REPORT, "variables": variables}
            )
            return response.json()

        created = await client.post(first.url + "/encoding/jobs", json=request_object())
        assert created.status_code == 201
        job = created.json()
        assert job["url"] == f"{PUBLIC_URL}/encoding/jobs/{job['id']}"
        assert (await client.get(f"{second.url}/encoding/jobs/{job['id']}")).json() == job
        barrier = (await client.post(first.url + "/encoding/jobs", json=request_object())).json()

        with anyio.fail_after(LIMIT):
            async with (
                graphql_socket(first.ws_url) as on_first,
                graphql_socket(second.ws_url, LEGACY_WS) as on_second,
            ):
                await on_first.subscribe("updates", JOB_UPDATES, filter={"video": job["video"]})
                # A connection handles its messages in order: once this answers, the
                # subscription above is listening too.
                await on_first.subscribe("ready", JOB_PROGRESS, id=barrier["id"])
                assert (await on_first.job("ready"))["id"] == barrier["id"]
                await on_second.subscribe("progress", JOB_PROGRESS, id=job["id"])
                assert (await on_second.job("progress"))["progress"] == 0

                forty = (await report(first, 40))["data"]["updateJobProgress"]
                assert await on_second.job("progress") == forty
                sixty = (await report(second, 60))["data"]["updateJobProgress"]
                assert await on_second.job("progress") == sixty
                assert [await on_first.job("updates") for _ in range(2)] == [forty, sixty]

                lower = await client.patch(
                    f"{first.url}/encoding/jobs/{job['id']}", json={"progress": 30}
                )
                assert (lower.status_code, lower.json()["error"]["code"]) == (409, "CONFLICT")
                deleted = await client.delete(f"{first.url}/encoding/jobs/{job['id']}")
                assert deleted.json()["deleted_at"] is not None
                # The second gateway's subscriber gets the deletion, then `complete`.
                (last,) = await on_second.until_complete("progress")
                assert last["deletedAt"] is not None and last["progress"] == 60

        refused = await report(second, 70)
        assert refused["errors"][0]["extensions"]["code"] == "CONFLICT"
        again = await client.get(f"{second.url}/encoding/jobs/{job['id']}")
        assert again.json() == deleted.json()


@dataclass
class Report:
    progress: int
    status: str | None
    sent: float
    answered: float
    accepted: bool
    code: str | None


@pytest.mark.engines("postgresql")
@pytest.mark.anyio
async def test_concurrent_reports_through_both_gateways_keep_the_state_rules(
    gateways: tuple[Server, Server],
) -> None:
    rng = random.Random(11)
    async with httpx.AsyncClient(timeout=60) as client:
        job = (await client.post(gateways[0].url + "/encoding/jobs", json=request_object())).json()
        reports: list[Report] = []

        async def send_report(index: int, progress: int, status: str | None) -> None:
            # Alternate gateways and paths: GraphQL on one, REST on the other.
            server = gateways[index % 2]
            sent = time.perf_counter()
            if index % 2 == 0:
                variables = {"id": job["id"], "progress": progress, "status": status}
                body = (
                    await client.post(
                        server.url + "/graphql", json={"query": REPORT, "variables": variables}
                    )
                ).json()
                errors = body.get("errors")
                code = errors[0]["extensions"]["code"] if errors else None
            else:
                patch = {"progress": progress} | ({"status": 1} if status else {})
                response = await client.patch(f"{server.url}/encoding/jobs/{job['id']}", json=patch)
                code = None if response.status_code == 200 else response.json()["error"]["code"]
            reports.append(Report(progress, status, sent, time.perf_counter(), code is None, code))

        async def worker(index: int) -> None:
            for step in range(8):
                status = "COMPLETED" if (index, step) == (7, 6) else None
                # The finishing report says 100: no other report can be higher.
                await send_report(index + step, 100 if status else rng.randint(0, 95), status)

        await asyncio.gather(*(worker(index) for index in range(16)))
        final = (await client.get(f"{gateways[1].url}/encoding/jobs/{job['id']}")).json()

    assert {report.code for report in reports} <= {None, "CONFLICT"}
    accepted = [report for report in reports if report.accepted]
    completion = next(report for report in reports if report.status)
    assert completion.accepted  # nothing else could finish the job first
    assert (final["status"], final["progress"]) == (1, 100)
    for earlier in accepted:
        for later in accepted:
            # A report that began after another one's answer never moved progress back.
            if earlier.answered < later.sent:
                assert later.progress >= earlier.progress or later.status, (earlier, later)
    for report in reports:
        if report.sent > completion.answered:
            assert report.code == "CONFLICT", report  # the job had already ended
        elif not report.accepted:
            # Refused only because a higher progress, or the end, had already been applied.
            assert any(
                other.sent < report.answered and (other.progress > report.progress or other.status)
                for other in accepted
            ), report
