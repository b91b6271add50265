"""SIGTERM: requests under way finish, subscriptions complete, and the process exits in
bounded time even when a client never finishes its request.

A request is held "in flight" deterministically with `Expect: 100-continue`: the
server answers `100 Continue` when the application starts reading the body, and the
test sends the body only once the server has stopped accepting connections.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx2 as httpx
import pytest

from support.servers import Server, start_server
from tests.jobs_client import JobsClient
from tests.jobs_data import request_object
from tests.wsclient import JOB_PROGRESS, graphql_socket

pytestmark = pytest.mark.anyio

# Nothing here waits this long unless something is broken (the machine may be busy).
LIMIT = 60
# uvicorn re-raises the signal once it has shut down: death by SIGTERM is a clean exit.
CLEAN_EXITS = (0, -signal.SIGTERM)


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", **getattr(request, "param", {})}
    server = start_server(env, tmp_path / "server.log", timeout=LIMIT)
    yield server
    server.stop()


class Upload:
    """A POST /encoding/jobs whose body is sent when the test says so."""

    def __init__(self, server: Server) -> None:
        self.port = urlsplit(server.url).port
        self.body = json.dumps(request_object()).encode()

    async def start(self) -> None:
        """Send the headers; return once the application is reading the body."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            (
                "POST /encoding/jobs HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n"
                "Expect: 100-continue\r\n\r\n"
            ).encode()
        )
        await self.writer.drain()
        interim = await self.reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim

    async def finish(self) -> tuple[int, dict[str, object]]:
        """Send the body; the status and JSON body of the answer."""
        self.writer.write(self.body)
        await self.writer.drain()
        answer = await self.reader.read()  # the server closes the connection: shutting down
        self.writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    async def outcome(self) -> bytes:
        """Whatever the server sends until it closes the connection."""
        answer = await self.reader.read()
        self.writer.close()
        return answer


async def until_refused(server: Server) -> None:
    """Wait until the server no longer accepts connections: it is shutting down."""
    port = urlsplit(server.url).port
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        writer.close()
        await anyio.sleep(0.05)


async def exit_status(server: Server) -> int:
    return await anyio.to_thread.run_sync(server.process.wait)


async def test_sigterm_finishes_requests_under_way_and_completes_subscriptions(
    gateway: Server, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        job = await JobsClient(http).create()
    upload = Upload(gateway)
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url) as ws:
            await ws.subscribe("p", JOB_PROGRESS, id=job["id"])
            assert await ws.job("p") == job
            await upload.start()

            gateway.process.send_signal(signal.SIGTERM)
            assert await ws.receive() == {"id": "p", "type": "complete"}
            await until_refused(gateway)
            # The request under way when the signal came is answered, and stored.
            status, created = await upload.finish()
            assert status == 201, created
        assert await exit_status(gateway) in CLEAN_EXITS

    with sqlite3.connect(tmp_path / "jobs.db") as stored:
        ids = {row[0] for row in stored.execute("SELECT id FROM jobs")}
    assert len(ids) == 2
    log = gateway.log.read_text()
    assert "Traceback" not in log, log


@pytest.mark.parametrize("gateway", [{"SHUTDOWN_TIMEOUT": "1"}], indirect=True)
async def test_a_request_that_never_finishes_does_not_keep_the_process_alive(
    gateway: Server,
) -> None:
    upload = Upload(gateway)
    with anyio.fail_after(LIMIT):
        await upload.start()
        gateway.process.send_signal(signal.SIGTERM)
        # Its client never sends the body; after SHUTDOWN_TIMEOUT it is cut off.
        await upload.outcome()
        assert await exit_status(gateway) in CLEAN_EXITS
    assert "timeout graceful shutdown exceeded" in gateway.log.read_text()
