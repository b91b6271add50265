"""Access over WebSocket: who may subscribe, to whose jobs, and how many at once.

A real uvicorn process with AUTH_JWT_SECRET set, real WebSocket clients speaking
both subprotocols.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from support.servers import Server, start_server
from tests.tokens import (
    JOB_INPUT,
    OTHER_SECRET,
    SECRET,
    auth_settings,
    bearer,
    create_job,
    expired_token,
    token,
)
from tests.tokens import gateway as in_process
from tests.wsclient import JOB_PROGRESS, JOB_UPDATES, PROTOCOLS, TRANSPORT_WS, graphql_socket

pytestmark = pytest.mark.anyio

# No test here waits this long unless something is broken; it keeps a failure from hanging.
LIMIT = 30
MAX_SUBSCRIPTIONS = 3


def signed(**claims: Any) -> str:
    """A token signed with the right secret, with these claims changed."""
    now = int(time.time())
    base = {"sub": "tests", "tenant": "acme", "scope": "jobs:read", "iat": now, "exp": now + 86400}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


# The Authorization value sent, and the scope it grants (None: not a valid token).
CREDENTIALS: dict[str, tuple[Any, str | None]] = {
    "no token": (None, None),
    "garbage": ("Bearer not.a.jwt", None),
    "not a string": (["Bearer", "x"], None),
    "expired": (f"Bearer {expired_token()}", None),
    "wrong secret": (f"Bearer {token(secret=OTHER_SECRET)}", None),
    # Would never expire on a WebSocket (pyjwt itself takes the string).
    "numeric-string exp": (f"Bearer {signed(exp=str(int(time.time()) + 86400))}", None),
    "NUL in tenant": ("Bearer " + signed(tenant="ac\x00me"), None),
    "read-only": (f"Bearer {token(scope='jobs:read')}", "jobs:read"),
    "write": (f"Bearer {token(scope='jobs:write')}", "jobs:write"),
    "report": (f"Bearer {token(scope='jobs:report')}", "jobs:report"),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("ws-access")
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


async def create(gateway: Server, tenant: str = "acme") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.post("/encoding/jobs", json=JOB_INPUT, headers=bearer(token(tenant)))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def change(gateway: Server, method: str, job_id: str, tenant: str = "acme") -> None:
    body = {"progress": 50} if method == "PATCH" else None
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.request(
            method, f"/encoding/jobs/{job_id}", json=body, headers=bearer(token(tenant))
        )
    assert response.status_code == 200, response.text


def error_codes(message: dict[str, Any], protocol: str) -> list[str]:
    assert message["type"] == "error", message
    errors = message["payload"] if protocol == TRANSPORT_WS else [message["payload"]]
    return [error["extensions"]["code"] for error in errors]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("subscription", ["jobProgress", "jobUpdates"])
@pytest.mark.parametrize("credential", CREDENTIALS)
async def test_subscription_matrix(
    gateway: Server, credential: str, subscription: str, protocol: str
) -> None:
    authorization, granted = CREDENTIALS[credential]
    job = await create(gateway)
    payload = {} if authorization is None else {"Authorization": authorization}
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol, init=False) as ws:
            await ws.send({"type": "connection_init", "payload": payload})
            if granted is None:
                if protocol == TRANSPORT_WS:
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.receive()
                    assert closed.value.rcvd is not None
                    assert closed.value.rcvd.code == 4403
                else:
                    refusal = await ws.receive()
                    assert refusal["type"] == "connection_error"
                    assert refusal["payload"]["code"] == "UNAUTHENTICATED"
                return
            assert await ws.receive() == {"type": "connection_ack"}
            if subscription == "jobProgress":
                await ws.subscribe("1", JOB_PROGRESS, id=job["id"])
            else:
                await ws.subscribe("1", JOB_UPDATES)
            if granted != "jobs:read":
                assert error_codes(await ws.receive(), protocol) == ["FORBIDDEN"]
                return
            if subscription == "jobProgress":
                assert (await ws.job("1"))["id"] == job["id"]
            else:
                created = await create(gateway)
                assert (await ws.job("1"))["id"] == created["id"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_upgrade_header_authenticates_too(gateway: Server, protocol: str) -> None:
    job = await create(gateway)
    headers = bearer(token(scope="jobs:read"))
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol, additional_headers=headers) as ws:
            await ws.subscribe("1", JOB_PROGRESS, id=job["id"])
            assert (await ws.job("1"))["id"] == job["id"]


async def test_a_bad_payload_token_is_refused_even_with_a_good_header(gateway: Server) -> None:
    headers = bearer(token(scope="jobs:read"))
    with anyio.fail_after(LIMIT):
        async with graphql_socket(
            gateway.ws_url, TRANSPORT_WS, init=False, additional_headers=headers
        ) as ws:
            await ws.send(
                {"type": "connection_init", "payload": {"Authorization": "Bearer forged"}}
            )
            with pytest.raises(ConnectionClosed):
                await ws.receive()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_another_tenants_jobs_are_never_heard(gateway: Server, protocol: str) -> None:
    theirs = await create(gateway, tenant="umbrella")
    payload = {"Authorization": f"Bearer {token(scope='jobs:read')}"}
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol, payload=payload) as ws:
            await ws.subscribe("p", JOB_PROGRESS, id=theirs["id"])
            assert error_codes(await ws.receive(), protocol) == ["NOT_FOUND"]

            await ws.subscribe("u", JOB_UPDATES)
            # The other tenant creates, reports on and deletes jobs; then ours changes.
            other = await create(gateway, tenant="umbrella")
            await change(gateway, "PATCH", other["id"], tenant="umbrella")
            await change(gateway, "DELETE", theirs["id"], tenant="umbrella")
            mine = await create(gateway)
            # Events arrive in order: the first one this subscriber hears is its own.
            assert (await ws.job("u"))["id"] == mine["id"]
            await change(gateway, "DELETE", other["id"], tenant="umbrella")
            await change(gateway, "PATCH", mine["id"])
            heard = await ws.job("u")
            assert (heard["id"], heard["progress"]) == (mine["id"], 50)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscriptions_per_connection_are_capped(gateway: Server, protocol: str) -> None:
    payload = {"Authorization": f"Bearer {token(scope='jobs:read')}"}
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, protocol, payload=payload) as ws:
            for op in range(MAX_SUBSCRIPTIONS):
                await ws.subscribe(str(op), JOB_UPDATES)
            await ws.subscribe("one too many", JOB_UPDATES)
            refusal = await ws.receive()
            assert refusal["type"] == "error" and refusal["id"] == "one too many"
            # graphql-transport-ws sends a list of errors, graphql-ws one.
            [error] = refusal["payload"] if protocol == TRANSPORT_WS else [refusal["payload"]]
            assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
            assert f"at most {MAX_SUBSCRIPTIONS} operations" in error["message"]
            # The others still run.
            created = await create(gateway)
            heard = [await ws.receive() for _ in range(MAX_SUBSCRIPTIONS)]
            assert {(message["type"], message["id"]) for message in heard} == {
                (ws.next_type, str(op)) for op in range(MAX_SUBSCRIPTIONS)
            }
            assert {message["payload"]["data"]["jobUpdates"]["id"] for message in heard} == {
                created["id"]
            }


async def test_an_unknown_id_and_another_tenants_id_look_the_same(gateway: Server) -> None:
    theirs = await create(gateway, tenant="umbrella")
    payload = {"Authorization": f"Bearer {token(scope='jobs:read')}"}
    with anyio.fail_after(LIMIT):
        async with graphql_socket(gateway.ws_url, TRANSPORT_WS, payload=payload) as ws:
            answers = []
            for op, job_id in (("a", theirs["id"]), ("b", str(uuid.uuid4()))):
                await ws.subscribe(op, JOB_PROGRESS, id=job_id)
                message = await ws.receive()
                [error] = message["payload"]
                answers.append((error["extensions"], error["message"].replace(job_id, "ID")))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unexpected_errors_are_masked_over_websocket(tmp_path: Path, protocol: str) -> None:
    settings = auth_settings(tmp_path)
    with in_process(settings) as client:
        job = create_job(client)
        # Break the database under the running gateway: a real, unexpected failure.
        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute("ALTER TABLE jobs RENAME TO jobs_gone")
        with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
            init = {"type": "connection_init", "payload": bearer(token())}
            ws.send_json(init)
            assert ws.receive_json() == {"type": "connection_ack"}
            start = "subscribe" if protocol == TRANSPORT_WS else "start"
            query = {"query": JOB_PROGRESS, "variables": {"id": job["id"]}}
            ws.send_json({"id": "1", "type": start, "payload": query})
            message = ws.receive_json()
            while message["type"] == "ka":
                message = ws.receive_json()
    assert message["type"] == "error"
    [error] = message["payload"] if protocol == TRANSPORT_WS else [message["payload"]]
    request_id = error["extensions"]["requestId"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["message"] == f"internal error (request id {request_id})"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_connection_ends_when_its_token_expires(gateway: Server, protocol: str) -> None:
    short = token(scope="jobs:read", ttl=2)
    with anyio.fail_after(LIMIT):
        async with graphql_socket(
            gateway.ws_url, protocol, payload={"Authorization": f"Bearer {short}"}
        ) as ws:
            await ws.subscribe("u", JOB_UPDATES)
            created = await create(gateway)
            assert (await ws.job("u"))["id"] == created["id"]  # served while the token is valid
            if protocol == TRANSPORT_WS:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.receive()
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                    4403,
                    "token has expired",
                )
            else:
                ending = await ws.receive()
                assert ending["type"] == "connection_error"
                assert ending["payload"] == {
                    "code": "UNAUTHENTICATED",
                    "message": "token has expired",
                }
                with pytest.raises(ConnectionClosed):
                    await ws.receive()
