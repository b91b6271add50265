"""Hostile WebSocket messages: malformed ones, a second `connection_init`, none at all.

A real uvicorn process with AUTH_JWT_SECRET set and a 1 s `connection_init` timeout;
raw messages sent with `websockets`, in both subprotocols. Whatever a client sends,
it gets the protocol's answer (graphql-transport-ws: close 4400 naming the field;
graphql-ws: an `error` for the operation, or a `connection_error`), and the
server's log holds no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.servers import Server, start_server
from tests.tokens import JOB_INPUT, SECRET, token
from tests.wsclient import JOB_PROGRESS, LEGACY_WS, PROTOCOLS, TRANSPORT_WS

pytestmark = pytest.mark.anyio

LIMIT = 30
INIT_TIMEOUT = 1
AUTH = {"Authorization": f"Bearer {token(scope='jobs:read jobs:write')}"}
QUERY = "subscription { jobUpdates { id } }"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("ws-messages")
    running = start_server(
        {
            "DATABASE_URL": f"sqlite:///{folder}/jobs.db",
            "AUTH_JWT_SECRET": SECRET,
            "WEBSOCKET_INIT_TIMEOUT": str(INIT_TIMEOUT),
        },
        folder / "server.log",
    )
    yield running
    running.stop()


def start(protocol: str) -> str:
    return "subscribe" if protocol == TRANSPORT_WS else "start"


def stop(protocol: str) -> str:
    return "complete" if protocol == TRANSPORT_WS else "stop"


# name: (message for a protocol, the field the answer must name, the operation it is about)
MALFORMED: dict[str, tuple[Any, str, str | None]] = {
    "a JSON array": (lambda p: [{"type": "connection_init"}], "message", None),
    "a JSON number": (lambda p: 42, "message", None),
    "a JSON string": (lambda p: "connection_init", "message", None),
    "JSON null": (lambda p: None, "message", None),
    "no type": (lambda p: {"payload": {}}, "type", None),
    "a type that is a list": (lambda p: {"type": ["start"]}, "type", None),
    "an id that is a number": (
        lambda p: {"type": start(p), "id": 1, "payload": {"query": QUERY}},
        "id",
        None,
    ),
    "an id that is a list": (
        lambda p: {"type": start(p), "id": ["1"], "payload": {"query": QUERY}},
        "id",
        None,
    ),
    "no payload": (lambda p: {"type": start(p), "id": "1"}, "payload", "1"),
    "a payload that is a list": (
        lambda p: {"type": start(p), "id": "1", "payload": [QUERY]},
        "payload",
        "1",
    ),
    "no query": (lambda p: {"type": start(p), "id": "1", "payload": {}}, "payload.query", "1"),
    "a query that is an object": (
        lambda p: {"type": start(p), "id": "1", "payload": {"query": {"q": QUERY}}},
        "payload.query",
        "1",
    ),
    "variables that are a list": (
        lambda p: {"type": start(p), "id": "1", "payload": {"query": QUERY, "variables": [1]}},
        "payload.variables",
        "1",
    ),
    "an operationName that is a number": (
        lambda p: {"type": start(p), "id": "1", "payload": {"query": QUERY, "operationName": 1}},
        "payload.operationName",
        "1",
    ),
    "a stop without an id": (lambda p: {"type": stop(p)}, "id", None),
    "a stop whose id is an object": (lambda p: {"type": stop(p), "id": {"a": 1}}, "id", None),
}


async def answer(connection: ClientConnection) -> dict[str, Any] | tuple[int, str]:
    """The server's next message (keep-alives skipped), or the close code and reason."""
    try:
        while True:
            message: dict[str, Any] = json.loads(await connection.recv())
            if message["type"] != "ka":
                return message
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame (the server failed)"
        return closed.rcvd.code, closed.rcvd.reason


def new_log(gateway: Server, offset: int) -> str:
    return gateway.log.read_bytes()[offset:].decode(errors="replace")


@pytest.mark.parametrize("initialised", [False, True], ids=["before init", "after init"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_message_gets_the_protocols_answer(
    gateway: Server, case: str, protocol: str, initialised: bool
) -> None:
    build, field, operation = MALFORMED[case]
    offset = gateway.log.stat().st_size
    with anyio.fail_after(LIMIT):
        async with connect(gateway.ws_url, subprotocols=[protocol], proxy=None) as connection:  # type: ignore[list-item]
            if initialised:
                await connection.send(json.dumps({"type": "connection_init", "payload": AUTH}))
                assert await answer(connection) == {"type": "connection_ack"}
            await connection.send(json.dumps(build(protocol)))
            got = await answer(connection)
            if protocol == TRANSPORT_WS:
                assert isinstance(got, tuple) and got[0] == 4400, got
                assert got[1].startswith(f"{field}: "), got
            else:
                assert isinstance(got, dict), got
                if operation is not None:
                    assert got["type"] == "error" and got["id"] == operation, got
                    error = got["payload"]
                    assert error["extensions"]["code"] == "BAD_USER_INPUT", got
                else:
                    assert got["type"] == "connection_error", got
                    error = got["payload"]
                    assert error["code"] == "BAD_USER_INPUT", got
                assert error["message"].startswith(f"{field}: "), got
                # The connection goes on: the legacy protocol reports and carries on.
                if not initialised:
                    await connection.send(json.dumps({"type": "connection_init", "payload": AUTH}))
                    assert await answer(connection) == {"type": "connection_ack"}
    log = new_log(gateway, offset)
    assert "Traceback" not in log and "INTERNAL_SERVER_ERROR" not in log, log


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_null_connection_init_payload_is_an_empty_one(
    gateway: Server, protocol: str
) -> None:
    # graphql-transport-ws's PROTOCOL.md: `payload?: Record<string, unknown> | null`.
    with anyio.fail_after(LIMIT):
        async with connect(gateway.ws_url, subprotocols=[protocol], proxy=None) as connection:  # type: ignore[list-item]
            await connection.send(json.dumps({"type": "connection_init", "payload": None}))
            got = await answer(connection)
    # No token anywhere: refused as such, not as a malformed message.
    if protocol == TRANSPORT_WS:
        assert got == (4403, "Forbidden")
    else:
        assert isinstance(got, dict) and got["payload"]["code"] == "UNAUTHENTICATED", got


async def test_the_legacy_protocol_answers_an_unknown_message_type(gateway: Server) -> None:
    with anyio.fail_after(LIMIT):
        async with connect(gateway.ws_url, subprotocols=[LEGACY_WS], proxy=None) as connection:  # type: ignore[list-item]
            await connection.send(json.dumps({"type": "subscribe", "id": "1"}))
            got = await answer(connection)
    assert isinstance(got, dict) and got["type"] == "connection_error", got
    assert got["payload"]["message"] == "type: unknown message type 'subscribe'"


async def test_a_second_connection_init_closes_a_legacy_connection(gateway: Server) -> None:
    # Each one used to start another keep-alive task, never cancelled: 25,000 inits
    # on 4 connections held 100,000 tasks.
    offset = gateway.log.stat().st_size
    with anyio.fail_after(LIMIT):
        async with connect(gateway.ws_url, subprotocols=[LEGACY_WS], proxy=None) as connection:  # type: ignore[list-item]
            init = json.dumps({"type": "connection_init", "payload": AUTH})
            await connection.send(init)
            assert await answer(connection) == {"type": "connection_ack"}
            await connection.send(init)
            assert await answer(connection) == (4429, "Too many initialisation requests")
    assert "Traceback" not in new_log(gateway, offset)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_connection_that_never_initialises_is_closed(
    gateway: Server, protocol: str
) -> None:
    # The legacy protocol used to hold such a connection for ever (3,000 of them held
    # ~59 KiB each); both now close it after WEBSOCKET_INIT_TIMEOUT.
    with anyio.fail_after(LIMIT):
        async with connect(gateway.ws_url, subprotocols=[protocol], proxy=None) as connection:  # type: ignore[list-item]
            began = anyio.current_time()
            assert await answer(connection) == (4408, "Connection initialisation timeout")
            assert anyio.current_time() - began < 15


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_initialised_connection_outlives_the_init_timeout(
    gateway: Server, protocol: str
) -> None:
    with anyio.fail_after(LIMIT):
        async with connect(gateway.ws_url, subprotocols=[protocol], proxy=None) as connection:  # type: ignore[list-item]
            await connection.send(json.dumps({"type": "connection_init", "payload": AUTH}))
            assert await answer(connection) == {"type": "connection_ack"}
            await anyio.sleep(INIT_TIMEOUT + 1.5)
            kind = "subscribe" if protocol == TRANSPORT_WS else "start"
            query = {"query": JOB_PROGRESS, "variables": {"id": JOB_INPUT["video"]}}
            await connection.send(json.dumps({"type": kind, "id": "1", "payload": query}))
            got = await answer(connection)
            # Served (the job is unknown: NOT_FOUND), not closed.
            assert isinstance(got, dict) and got["type"] == "error", got
