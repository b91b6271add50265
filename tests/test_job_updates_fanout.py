"""`jobUpdates` fanned out below strawberry: shared groups, slow clients, interruptions,
cleanup, and validation as strawberry validates.

The gateway runs on a real uvicorn inside the test's own event loop, with real
WebSocket clients, so a test can look at the view's fan-out (`GraphQLView.fanout`:
its groups, their members and executions) beside what the clients receive.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
import uvicorn
from graphql import FieldNode, GraphQLError, ValidationRule
from starlette.routing import WebSocketRoute
from strawberry.schema import schema as strawberry_schema

from app.graphql.ws import Fanout
from app.jobs import catchup
from app.jobs.mailbox import MAILBOX_LIMIT
from app.main import create_app
from app.settings import Settings
from support.servers import free_port
from tests.jobs_client import JobsClient
from tests.wsclient import JOB_UPDATES, LEGACY_WS, PROTOCOLS, TRANSPORT_WS, graphql_socket

pytestmark = pytest.mark.anyio

LIMIT = 60

FELL_BEHIND = (
    "this subscription fell more than 64 jobs behind; subscribe again (and reload what it showed)"
)
# strawberry's way of ending a stream that raises `SubscriptionInterrupted`.
BY_STRAWBERRY = JOB_UPDATES.replace("{ id ", "{ id @include(if: true) ", 1)


@dataclass
class InProcess:
    url: str
    fanout: Fanout  # (None with FAST_PATHS off; the tests that look at it are skipped)
    jobs: JobsClient

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/graphql"

    async def subscriptions(self) -> int:
        count: int = (await self.jobs.http.get("/readyz")).json()["subscriptions"]
        return count

    def update_groups(self) -> list[Any]:
        """The fan-out's `jobUpdates` groups (each serves one question of one tenant)."""
        return [group for group in self.fanout.groups.values() if group.job_filter is not None]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", public_url=url))
    view: Any = next(
        route.endpoint
        for route in app.routes
        if isinstance(route, WebSocketRoute) and route.path == "/graphql"
    )
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    with anyio.fail_after(LIMIT):
        await until(lambda: server.started)
    async with httpx.AsyncClient(base_url=url) as http:
        yield InProcess(url, view.fanout, JobsClient(http))
    server.should_exit = True
    await serving


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Wait until `condition` holds; the caller's `fail_after` bounds the wait."""
    while True:
        holds = condition()
        if holds if isinstance(holds, bool) else await holds:
            return
        await asyncio.sleep(0.01)


def interrupted(protocol: str, op: str, why: str) -> list[dict[str, Any]]:
    """What a subscription ended by `SubscriptionInterrupted(why)` receives last."""
    payload = {
        "data": None,
        "errors": [{"message": why, "extensions": {"code": "SUBSCRIPTION_INTERRUPTED"}}],
    }
    if protocol == TRANSPORT_WS:
        return [{"id": op, "type": "next", "payload": payload}, {"id": op, "type": "complete"}]
    return [{"type": "data", "id": op, "payload": payload}, {"type": "complete", "id": op}]


@pytest.mark.fast_paths
async def test_subscribers_asking_the_same_share_one_group_and_one_execution_per_change(
    gateway: InProcess,
) -> None:
    video = str(uuid.uuid4())
    few = "subscription ($filter: JobFilter) { jobUpdates(filter: $filter) { id progress } }"
    with anyio.fail_after(LIMIT):
        async with (
            graphql_socket(gateway.ws_url, TRANSPORT_WS) as first,
            graphql_socket(gateway.ws_url, LEGACY_WS) as second,
            graphql_socket(gateway.ws_url, TRANSPORT_WS) as third,
        ):
            sockets = (first, second, third)
            other_video = str(uuid.uuid4())
            for ws in sockets:
                for n in range(10):
                    await ws.subscribe(f"same{n}", JOB_UPDATES, filter={"video": video})
                await ws.subscribe("other filter", JOB_UPDATES, filter={"video": other_video})
                await ws.subscribe("other fields", few, filter={"video": video})
            await until(lambda: sum(g.size for g in gateway.update_groups()) == 36)
            # One group per (document, variables): 30 subscriptions share one.
            assert sorted(group.size for group in gateway.update_groups()) == [3, 3, 30]
            shared = max(gateway.update_groups(), key=lambda group: group.size)

            changes = [await gateway.jobs.create(video)]
            changes.append(await gateway.jobs.report(changes[0], 40))
            changes.append(await gateway.jobs.delete(changes[0]))
            for ws in sockets:
                heard: dict[str, list[Any]] = {}
                for _ in range(11 * len(changes)):
                    message = await ws.receive()
                    heard.setdefault(message["id"], []).append(message["payload"]["data"])
                assert heard == {
                    **{f"same{n}": [{"jobUpdates": job} for job in changes] for n in range(10)},
                    "other fields": [
                        {"jobUpdates": {"id": job["id"], "progress": job["progress"]}}
                        for job in changes
                    ],
                }
            # Each change was executed once for the 30 subscribers of the shared group;
            # the group of another filter never executed one (its filter was checked).
            assert shared.executions == len(changes)
            assert sorted(group.executions for group in gateway.update_groups()) == [0, 3, 3]


@pytest.mark.fast_paths
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stopping_leaving_and_shutting_down_free_the_group(
    gateway: InProcess, protocol: str
) -> None:
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            for op in ("a", "b"):
                await ws.subscribe(op, JOB_UPDATES, filter={"status": "IN_PROGRESS"})
            await until(lambda: sum(g.size for g in gateway.update_groups()) == 2)
            await ws.stop("a")
            if protocol == LEGACY_WS:  # the legacy protocol confirms a stop
                assert await ws.receive() == {"type": "complete", "id": "a"}
            (group,) = gateway.update_groups()
            await until(lambda: group.size == 1)
            created = await gateway.jobs.create()
            assert await ws.job("b") == created
            await ws.stop("b")
            await until(lambda: not gateway.update_groups())
            assert await gateway.subscriptions() == 0

        # A client that goes away without a word.
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("c", JOB_UPDATES)
            await until(lambda: len(gateway.update_groups()) == 1)
        await until(lambda: not gateway.update_groups())
        assert await gateway.subscriptions() == 0
        assert not gateway.fanout.groups

        # Shutdown: `complete`, and everything given back.
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("d", JOB_UPDATES)
            await until(lambda: len(gateway.update_groups()) == 1)
            hub = gateway.update_groups()[0].events
            closing = asyncio.create_task(hub.close_subscriptions())
            assert await ws.receive() == (
                {"id": "d", "type": "complete"}
                if protocol == TRANSPORT_WS
                else {"type": "complete", "id": "d"}
            )
            await closing
        assert not gateway.fanout.groups
        assert hub.subscriber_count == 0


@pytest.mark.fast_paths
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscriber_that_stops_reading_is_told_it_fell_behind_and_the_others_go_on(
    gateway: InProcess, protocol: str
) -> None:
    video = str(uuid.uuid4())
    # Big messages, no compression, many subscriptions on the stalled connection: its
    # buffers (a few MB in the kernel) fill after some dozens of new jobs.
    inputs = [str(uuid.uuid4()) for _ in range(100)]
    stalled_ops = [f"s{n}" for n in range(16)]
    with anyio.fail_after(LIMIT * 2):
        async with (
            graphql_socket(
                gateway.ws_url, protocol, compression=None, max_queue=1, ping_interval=None
            ) as stalled,
            graphql_socket(gateway.ws_url, protocol) as reader,
        ):
            for op in stalled_ops:
                await stalled.subscribe(op, JOB_UPDATES, filter={"video": video})
            await reader.subscribe("r", JOB_UPDATES, filter={"video": video})
            await until(lambda: sum(g.size for g in gateway.update_groups()) == 17)
            first = await gateway.jobs.create(video, inputs)
            firsts = [await stalled.receive() for _ in stalled_ops]
            assert sorted(message["id"] for message in firsts) == sorted(stalled_ops)
            assert all(message["payload"]["data"]["jobUpdates"] == first for message in firsts)
            assert await reader.job("r") == first

            # `stalled` reads nothing more until the end; the reader gets every job at
            # once, until the stalled subscriptions have been ended (and freed).
            created = [first]
            while await gateway.subscriptions() > 1:
                assert len(created) < 1_000, "the stalled subscriptions were never ended"
                created.append(await gateway.jobs.create(video, inputs))
                assert await reader.job("r") == created[-1]
            (group,) = gateway.update_groups()
            assert group.size == 1

            # Reading again: the jobs its buffers held, in order, then the error, then
            # `complete`; strawberry's way says it in the same words.
            heard: dict[str, list[dict[str, Any]]] = {op: [] for op in stalled_ops}
            while any(not seen or seen[-1]["type"] != "complete" for seen in heard.values()):
                message = await stalled.receive()
                heard[message["id"]].append(message)
            later = await gateway.jobs.create(video)
            assert await reader.job("r") == later
    for op, seen in heard.items():
        assert seen[-2:] == interrupted(protocol, op, FELL_BEHIND)
        jobs = [message["payload"]["data"]["jobUpdates"] for message in seen[:-2]]
        # (The first job was read before it stopped.)
        assert 1 < len(jobs) < len(created) - MAILBOX_LIMIT
        assert jobs == created[1 : 1 + len(jobs)]


@pytest.mark.fast_paths
async def test_a_broker_outage_too_long_to_catch_up_ends_fanned_out_subscriptions_as_strawberry_does(
    gateway: InProcess,
) -> None:
    since = datetime.now(UTC)
    for _ in range(catchup.CATCH_UP_LIMIT + 1):
        await gateway.jobs.create()
    why = (
        f"more than {catchup.CATCH_UP_LIMIT} jobs changed while the event broker was "
        "unreachable; subscribe again (and reload what it showed)"
    )
    with anyio.fail_after(LIMIT):
        for protocol in PROTOCOLS:
            async with graphql_socket(gateway.ws_url, protocol) as ws:
                await ws.subscribe("fast", JOB_UPDATES)
                await ws.subscribe("strawberry", BY_STRAWBERRY)
                await until(lambda: len(gateway.update_groups()) == 1)
                await until(lambda: gateway.update_groups()[0].events.subscriber_count == 2)
                hub = gateway.update_groups()[0].events
                # As the broker's reconnection does once it is back.
                await hub._catch_up(since)
                heard = [await ws.receive() for _ in range(4)]
                assert [m for m in heard if m["id"] == "fast"] == interrupted(protocol, "fast", why)
                assert [m for m in heard if m["id"] == "strawberry"] == interrupted(
                    protocol, "strawberry", why
                )
                assert not gateway.update_groups()
                await until(partial(lambda hub: hub.subscriber_count == 0, hub))


class RefusesJobUpdates(ValidationRule):
    """Stands for a rule a strawberry release adds to its validation (a security fix)."""

    def enter_field(self, node: FieldNode, *_: object) -> None:
        if node.name.value == "jobUpdates":
            self.report_error(GraphQLError("refused by a rule of strawberry's validation", node))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_rule_strawberry_validates_with_applies_to_fanned_out_subscriptions(
    gateway: InProcess, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # strawberry's validation entry point, with one more rule: what an upstream fix to its
    # rules looks like. The fan-out must refuse what strawberry's own path refuses.
    validate_document = strawberry_schema.validate_document

    def with_new_rule(schema: Any, document: Any, rules: Any) -> list[GraphQLError]:
        return validate_document(schema, document, (*rules, RefusesJobUpdates))

    monkeypatch.setattr(strawberry_schema, "validate_document", with_new_rule)
    video = str(uuid.uuid4())
    # A text of its own: parsed and validated documents are cached by text.
    query = f"{JOB_UPDATES} # {video}"
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol) as ws:
            await ws.subscribe("u", query, filter={"video": video})
            await gateway.jobs.create(video)  # heard, were the subscription served
            message = await ws.receive()
    assert message["type"] == "error" and message["id"] == "u", message
    errors = message["payload"] if protocol == TRANSPORT_WS else [message["payload"]]
    assert [error["message"] for error in errors] == [
        "refused by a rule of strawberry's validation"
    ]
