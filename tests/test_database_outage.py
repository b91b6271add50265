"""The database goes away under a running gateway, then comes back.

While it is away every request that needs it fails at once with UNAVAILABLE
(REST 503 with Retry-After, the GraphQL error code, a subscription's `error`
message), /readyz says what is wrong, the process stays up, and it serves again
by itself once the database is back, with every acknowledged write intact.

PostgreSQL: a cluster of this module's own (tests/services.py), stopped and
started; the shared server at TEST_POSTGRES_URL is never touched. SQLite: its file
on a tiny filesystem that fills up, then has room again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from support.servers import Server, start_server
from support.services import PostgresCluster
from tests.jobs_client import JobsClient
from tests.jobs_data import GET, REPORT, request_object
from tests.wsclient import JOB_PROGRESS, graphql_socket

pytestmark = pytest.mark.anyio

# Nothing here waits this long unless something is broken (the machine may be busy).
LIMIT = 60


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    reason = PostgresCluster.skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = PostgresCluster()
    try:
        cluster.create()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def gateway(cluster: PostgresCluster, tmp_path: Path) -> Iterator[Server]:
    server = start_server({"DATABASE_URL": cluster.url}, tmp_path / "server.log", timeout=LIMIT)
    yield server
    server.stop()


@pytest.fixture
async def http(gateway: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=LIMIT) as client:
        yield client


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "UNAVAILABLE"
    assert response.headers["retry-after"] == "1"


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", ())]


async def serving_again(http: httpx.AsyncClient, job: dict[str, Any]) -> httpx.Response:
    """GET the job until it answers 200 (the caller bounds the wait)."""
    while True:
        response = await http.get(f"/encoding/jobs/{job['id']}")
        if response.status_code != 503:
            return response
        await anyio.sleep(0.1)


async def test_while_postgresql_is_down_requests_are_unavailable_and_it_serves_again_after(
    cluster: PostgresCluster, gateway: Server, http: httpx.AsyncClient
) -> None:
    jobs = JobsClient(http)
    job = await jobs.report(await jobs.create(), 25)
    stored = (await http.get(f"/encoding/jobs/{job['id']}")).json()

    with anyio.fail_after(LIMIT):
        cluster.stop()
        try:
            assert_unavailable(await http.get(f"/encoding/jobs/{job['id']}"))
            assert_unavailable(await http.get("/encoding/jobs"))
            assert_unavailable(await http.post("/encoding/jobs", json=request_object()))
            assert_unavailable(
                await http.patch(f"/encoding/jobs/{job['id']}", json={"progress": 30})
            )
            assert_unavailable(await http.delete(f"/encoding/jobs/{job['id']}"))

            read = await http.post("/graphql", json={"query": GET, "variables": {"id": job["id"]}})
            assert read.status_code == 200 and codes(read.json()) == ["UNAVAILABLE"]
            report = await http.post(
                "/graphql", json={"query": REPORT, "variables": {"id": job["id"], "progress": 30}}
            )
            assert codes(report.json()) == ["UNAVAILABLE"]
            assert "database is unavailable" in report.json()["errors"][0]["message"]

            async with graphql_socket(gateway.ws_url) as ws:
                await ws.subscribe("p", JOB_PROGRESS, id=job["id"])
                refused = await ws.receive()
                assert refused["type"] == "error" and refused["id"] == "p", refused
                assert refused["payload"][0]["extensions"]["code"] == "UNAVAILABLE"

            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["problems"][0].startswith("database: unreachable: "), ready.json()
            assert (await http.get("/healthz")).status_code == 200
        finally:
            cluster.start()

        # Back by itself: the job exactly as it was acknowledged, and writes work again.
        again = await serving_again(http, job)
        assert again.status_code == 200 and again.json() == stored
        assert (await jobs.report(job, 30))["progress"] == 30
        assert (await http.post("/encoding/jobs", json=request_object())).status_code == 201
        assert (await http.get("/readyz")).status_code == 200

    assert gateway.process.poll() is None
    gateway.stop()
    log = gateway.log.read_text()
    assert "Traceback" not in log, log
    assert "database unavailable, answering UNAVAILABLE" in log


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on a new folder (needs root), unmounted after."""
    folder = Path(tempfile.mkdtemp(prefix="jobs-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {mounted.stderr!r}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def fill(folder: Path) -> Path:
    """Take every free byte of the filesystem holding `folder`."""
    filler = folder / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())
    return filler


async def test_a_full_disk_makes_sqlite_writes_unavailable_until_there_is_room_again(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem to fill up needs root")
    with small_filesystem("8m") as folder:
        server = start_server(
            {"DATABASE_URL": f"sqlite:///{folder}/jobs.db"}, tmp_path / "log", timeout=LIMIT
        )
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=LIMIT) as http:
                jobs = JobsClient(http)
                job = await jobs.create()
                filler = fill(folder)
                with anyio.fail_after(LIMIT):
                    # Writes cannot be stored: refused, not half-done.
                    for _ in range(3):
                        assert_unavailable(
                            await http.post(
                                "/encoding/jobs", json=request_object(video=str(uuid.uuid4()))
                            )
                        )
                    # What is stored can still be read.
                    assert (await http.get(f"/encoding/jobs/{job['id']}")).json()["progress"] == 0
                    filler.unlink()
                    created = await http.post("/encoding/jobs", json=request_object())
                    assert created.status_code == 201
                    listed = (await http.get("/encoding/jobs")).json()["jobs"]
                    assert [found["id"] for found in listed] == [created.json()["id"], job["id"]]
            assert server.process.poll() is None
        finally:
            server.stop()
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log, log
