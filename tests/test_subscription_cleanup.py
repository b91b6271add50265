"""Whatever way a subscription ends, it leaves nothing behind: no task, no mailbox.

The gateway runs on a real uvicorn inside the test's own event loop, so the test
can list every task the server holds before and after.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
import uvicorn

from app.errors import SubscriptionInterrupted
from app.jobs import events
from app.jobs.events import JobEvents
from app.jobs.mailbox import MAILBOX_LIMIT
from app.jobs.model import Job, JobFilter, JobStatus
from app.main import create_app
from app.settings import Settings
from support.servers import free_port
from tests.jobs_client import JobsClient
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES, LEGACY_WS, PROTOCOLS, graphql_socket

pytestmark = pytest.mark.anyio

LIMIT = 60


@dataclass
class InProcess:
    url: str

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/graphql"

    async def idle(self) -> bool:
        return await self.subscriptions() == 0

    async def subscriptions(self) -> int:
        async with httpx.AsyncClient() as http:
            count: int = (await http.get(self.url + "/readyz")).json()["subscriptions"]
            return count


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", public_url=url))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    with anyio.fail_after(LIMIT):
        await until(lambda: server.started)
    yield InProcess(url)
    server.should_exit = True
    await serving


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Wait until `condition` holds; the caller's `fail_after` bounds the wait."""
    for _ in itertools.count():
        holds = condition()
        if holds if isinstance(holds, bool) else await holds:
            return
        await asyncio.sleep(0.01)


async def test_every_way_a_subscription_ends_frees_what_it_held(gateway: InProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        jobs = JobsClient(http)
        with anyio.fail_after(LIMIT):
            # Warm up whatever the server starts once (connections, caches), then count.
            job = await jobs.create()
            async with graphql_socket(gateway.ws_url) as ws:
                await ws.subscribe("1", JOB_PROGRESS, id=job["id"])
                await ws.job("1")
            await until(gateway.idle)
            before = other_tasks()

            for protocol in PROTOCOLS:
                ended = await jobs.create()
                big = await jobs.create(inputs=[str(uuid.uuid4()) for _ in range(100)])
                # Ends by itself (the job completes); stopped by the client; refused;
                # left open when the client closes; cut off mid-stream.
                async with graphql_socket(gateway.ws_url, protocol) as ws:
                    await ws.subscribe("done", JOB_PROGRESS, id=ended["id"])
                    await ws.subscribe("stopped", JOB_PROGRESS, id=job["id"])
                    await ws.subscribe("refused", JOB_PROGRESS, id=str(uuid.uuid4()))
                    await ws.subscribe("open", JOB_UPDATES, filter={"status": "COMPLETED"})
                    firsts = {(await ws.receive())["id"] for _ in range(3)}
                    assert firsts == {"done", "stopped", "refused"}
                    await ws.stop("stopped")
                    if protocol == LEGACY_WS:
                        assert await ws.receive() == {"type": "complete", "id": "stopped"}
                    await jobs.report(ended, 100, "COMPLETED")
                    messages = [await ws.receive() for _ in range(3)]
                    assert {(m["id"], m["type"]) for m in messages} == {
                        ("done", ws.next_type),
                        ("done", "complete"),
                        ("open", ws.next_type),
                    }
                    assert await gateway.subscriptions() == 1  # `open`
                async with graphql_socket(gateway.ws_url, protocol, compression=None) as cut:
                    for n in range(10):
                        await cut.subscribe(f"big{n}", JOB_PROGRESS, id=big["id"])
                    await cut.subscribe("updates", JOB_UPDATES)
                    for _ in range(10):
                        assert (await cut.receive())["type"] == cut.next_type
                    # Stop reading, let the server's sends back up, then drop the connection.
                    cut.connection.transport.pause_reading()
                    for progress in range(1, 30):
                        await jobs.report(big, progress)
                    cut.connection.transport.abort()

            await until(gateway.idle)
            await until(lambda: not other_tasks() - before)


def state(n: int, progress: int = 0) -> Job:
    """Job `n` at `progress`, a second later for each percent."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return Job(
        id=uuid.UUID(int=n),
        tenant="t",
        status=JobStatus.IN_PROGRESS,
        progress=progress,
        profile=uuid.UUID(int=0),
        video=uuid.UUID(int=0),
        inputs=(uuid.UUID(int=1),),
        created_at=start,
        updated_at=start + timedelta(seconds=progress),
        deleted_at=None,
        seq=n,
    )


async def test_a_subscriber_far_behind_on_a_job_gets_its_latest_state_not_a_backlog() -> None:
    hub = JobEvents("memory://")
    mailbox = hub.follow("t", uuid.UUID(int=1))
    for progress in range(100):
        mailbox.put(state(1, progress))
    mailbox.close()
    pending = []
    while (found := await mailbox.get()) is not None:
        pending.append(found.progress)
    assert len(pending) <= MAILBOX_LIMIT
    assert pending[-1] == 99
    assert pending == sorted(pending)


async def test_an_updates_subscriber_behind_on_too_many_jobs_is_told_to_subscribe_again() -> None:
    hub = JobEvents("memory://")
    mailbox = hub.watch("t", JobFilter())
    stream = hub.stream(mailbox)
    for n in range(MAILBOX_LIMIT + 1):
        mailbox.put(state(n))
    with pytest.raises(SubscriptionInterrupted, match="fell more than"):
        await stream.__anext__()
    assert hub.subscriber_count == 0


async def test_once_the_last_subscription_ends_the_process_hears_how_many_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "IDLE_DELAY", 0.0)
    told: list[int] = []
    hub = JobEvents("memory://", on_idle=told.append)
    first = hub.follow("t", uuid.UUID(int=1))
    second = hub.watch("t", JobFilter())
    hub.release(first)
    await asyncio.sleep(0.01)
    assert told == []  # one is still open
    hub.release(second)
    hub.release(second)  # given back twice, counted once
    # One that begins before the moment comes keeps the process from being idle.
    third = hub.follow("t", uuid.UUID(int=2))
    await asyncio.sleep(0.01)
    assert told == []
    hub.release(third)
    await asyncio.sleep(0.01)
    assert told == [3]
