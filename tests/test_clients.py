"""Real clients and tools against one real authenticating gateway (`python -m app serve`).

- GraphQL Code Generator (schema-ast and introspection plugins) and graphql-inspector,
  the npm devDependencies pinned with graphql 16 (what most tools still ship), read the
  live endpoint's introspection, without a token, as schema.graphql; so do graphql-js
  16 and 17 themselves (`graphql17` is graphql 17 under another name). graphql-core 3.3's
  @deprecated lists a location graphql-js 16 cannot represent (DIRECTIVE_DEFINITION),
  which failed both (app/graphql/schema.py). Each tool runs once.
- gql (Python) on its default WebSocket transport, which offers both subprotocols,
  legacy first: the gateway picks graphql-transport-ws, so queries and mutations work
  over it as subscriptions do.
- A missing, malformed or expired token over HTTP is 401 with `WWW-Authenticate`
  (RFC 6750) and the UNAUTHENTICATED body before anything runs: gql still reads the
  error, and graphql-request's refresh-on-401 fires and succeeds with a fresh token.
- A null for a non-null argument names the argument and says `null`, on HTTP and
  WebSocket alike.
- PUBLIC_URL unset: a job's `url` names the port served, and resolves
  (tests/test_public_url.py: uvicorn run directly).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from graphql import build_client_schema, build_schema, lexicographic_sort_schema, print_schema

from support.servers import ROOT, Server, start_server
from tests.tokens import JOB_INPUT, SECRET, bearer, expired_token, token

BIN = ROOT / "node_modules" / ".bin"

CREATE = GraphQLRequest(
    "mutation($input: CreateJobInput!) { createJob(input: $input) { id status } }",
    variable_values={"input": JOB_INPUT},
)
COUNT = gql("{ jobs { totalCount } }")


def progress(job_id: str) -> GraphQLRequest:
    return GraphQLRequest(
        "subscription($id: UUID!) { jobProgress(id: $id) { id progress status } }",
        variable_values={"id": job_id},
    )


NULL_FILTER = "jobs(filter: {includeDeleted: null}) { totalCount }"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("clients")
    # An empty PUBLIC_URL is unset (start_server would set it otherwise).
    running = start_server(
        {
            "DATABASE_URL": f"sqlite:///{folder}/jobs.db",
            "AUTH_JWT_SECRET": SECRET,
            "PUBLIC_URL": "",
        },
        folder / "server.log",
    )
    yield running
    running.stop()


def websocket(server: Server, **options: Any) -> WebsocketsTransport:
    """gql's default WebSocket transport, as its documentation sets it up."""
    return WebsocketsTransport(
        url=server.ws_url, init_payload={"Authorization": f"Bearer {token()}"}, **options
    )


def http(server: Server, headers: dict[str, str]) -> HTTPXAsyncTransport:
    return HTTPXAsyncTransport(url=server.url + "/graphql", headers=headers)


@pytest.mark.anyio
async def test_gql_default_websocket_transport_runs_queries_mutations_subscriptions(
    server: Server,
) -> None:
    transport = websocket(server)
    # What gql offers, in its order: the legacy protocol first.
    assert transport.adapter.subprotocols == ["graphql-ws", "graphql-transport-ws"]
    async with Client(transport=transport) as session:
        assert transport.subprotocol == "graphql-transport-ws"
        created = await session.execute(CREATE)
        count = await session.execute(COUNT)
        assert count["jobs"]["totalCount"] >= 1
        job_id = created["createJob"]["id"]
        async for update in session.subscribe(progress(job_id)):
            assert update["jobProgress"] == {"id": job_id, "progress": 0, "status": "IN_PROGRESS"}
            break


@pytest.mark.anyio
async def test_a_client_offering_only_the_legacy_protocol_still_gets_it(server: Server) -> None:
    transport = websocket(server, subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL])
    async with Client(transport=transport) as session:
        assert transport.subprotocol == "graphql-ws"
        async with Client(transport=websocket(server)) as other:
            job_id = (await other.execute(CREATE))["createJob"]["id"]
        async for update in session.subscribe(progress(job_id)):
            assert update["jobProgress"]["id"] == job_id
            break


@pytest.mark.parametrize(
    ("headers", "invalid_token"),
    [
        ({}, False),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, False),
        ({"Authorization": "Bearer not.a.jwt"}, True),
        (bearer(expired_token()), True),
    ],
    ids=["missing", "not bearer", "malformed", "expired"],
)
@pytest.mark.anyio
async def test_gql_over_http_sees_401_before_anything_runs(
    server: Server, headers: dict[str, str], invalid_token: bool
) -> None:
    # gql reads the GraphQL body of any status: the UNAUTHENTICATED error, as before.
    with pytest.raises(TransportQueryError) as refused:
        async with Client(transport=http(server, headers)) as session:
            await session.execute(CREATE)
    assert [e["extensions"]["code"] for e in refused.value.errors or []] == ["UNAUTHENTICATED"]

    # The answer itself, POST and GET: the challenge, and the same UNAUTHENTICATED body.
    for response in (
        httpx.post(
            server.url + "/graphql", json={"query": "{ jobs { totalCount } }"}, headers=headers
        ),
        httpx.get(
            server.url + "/graphql", params={"query": "{ jobs { totalCount } }"}, headers=headers
        ),
    ):
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="jobs"')
        assert ('error="invalid_token"' in challenge) is invalid_token
        [error] = response.json()["errors"]
        assert error["extensions"] == {"code": "UNAUTHENTICATED"}
        assert "data" not in response.json()
    # REST answers with the same challenge.
    rest = httpx.get(server.url + "/encoding/jobs", headers=headers)
    assert (rest.status_code, rest.headers["www-authenticate"]) == (401, challenge)


@pytest.mark.anyio
async def test_introspection_needs_no_token_and_scope_refusals_stay_in_the_result(
    server: Server,
) -> None:
    schema = httpx.post(
        server.url + "/graphql", json={"query": "{ __schema { queryType { name } } }"}
    )
    assert schema.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    # A valid token without the scope: the operation ran, FORBIDDEN is in its result.
    read_only = bearer(token(scope="jobs:read"))
    with pytest.raises(TransportQueryError) as refused:
        async with Client(transport=http(server, read_only)) as session:
            await session.execute(CREATE)
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "FORBIDDEN"


def test_graphql_request_refreshes_its_token_on_401(server: Server) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the graphql-request client needs Node.js")
    if not (ROOT / "node_modules" / "graphql-request").is_dir():
        pytest.skip("node_modules/graphql-request is missing: run `npm ci` at the top")
    script = ROOT / "tests" / "graphql_request_refresh.mjs"
    run = subprocess.run(
        [node, str(script), server.url + "/graphql", expired_token(), token()],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["refreshed"] == 1
    assert report["status"] == 401
    assert 'error="invalid_token"' in report["challenge"]
    assert [e["extensions"]["code"] for e in report["errors"]] == ["UNAUTHENTICATED"]
    assert report["data"]["jobs"]["totalCount"] >= 0


@pytest.mark.anyio
async def test_a_null_for_a_non_null_argument_names_it_and_says_null(server: Server) -> None:
    async with Client(transport=http(server, bearer(token()))) as session:
        with pytest.raises(TransportQueryError) as literal:
            await session.execute(gql("{ " + NULL_FILTER + " }"))
        with pytest.raises(TransportQueryError) as variable:
            await session.execute(
                GraphQLRequest(
                    "query($d: Boolean!) { jobs(filter: {includeDeleted: $d}) { totalCount } }",
                    variable_values={"d": None},
                )
            )
    async with Client(transport=websocket(server)) as session:
        with pytest.raises(TransportQueryError) as subscribed:
            async for _ in session.subscribe(
                gql("subscription { jobUpdates(filter: {includeDeleted: null}) { id } }")
            ):
                pass
    expected = "Expected value of non-null type 'Boolean!', found null."
    for refused, named in (
        (literal, "filter.includeDeleted: "),
        (variable, "Variable '$d' has invalid value: "),
        (subscribed, "filter.includeDeleted: "),
    ):
        [error] = refused.value.errors or []
        assert error["message"] == named + expected
        assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_a_job_url_names_the_port_served_and_resolves(server: Server) -> None:
    headers = bearer(token())
    rest = httpx.post(server.url + "/encoding/jobs", json=JOB_INPUT, headers=headers)
    graphql = httpx.post(
        server.url + "/graphql",
        json={"query": "mutation($i: CreateJobInput!) { createJob(input: $i) { url } }",
              "variables": {"i": JOB_INPUT}},
        headers=headers,
    )  # fmt: skip
    assert rest.headers["location"] == rest.json()["url"]
    for url in (rest.json()["url"], graphql.json()["data"]["createJob"]["url"]):
        assert url.startswith(f"http://127.0.0.1:{server.port}/encoding/jobs/")
        again = httpx.get(url, headers=headers)
        assert again.status_code == 200
        assert again.json()["url"] == url


def canonical(sdl: str) -> str:
    """The schema an SDL text describes, printed in one order (tools sort fields)."""
    return print_schema(lexicographic_sort_schema(build_schema(sdl)))


@pytest.fixture(scope="module")
def outputs(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both tools run at once against the live endpoint, without a token; what each wrote."""
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the schema tools need Node.js")
    if not (BIN / "graphql-codegen").exists() or not (BIN / "graphql-inspector").exists():
        pytest.skip("node_modules lacks the schema tools: run `npm ci` at the top")
    out = tmp_path_factory.mktemp("out")
    endpoint = server.url + "/graphql"
    config = out / "codegen.json"
    config.write_text(
        json.dumps(
            {
                "schema": endpoint,
                "generates": {
                    str(out / "codegen.graphql"): {"plugins": ["schema-ast"]},
                    str(out / "codegen.json"): {"plugins": ["introspection"]},
                },
            }
        )
    )
    commands = {
        "codegen": [str(BIN / "graphql-codegen"), "--config", str(config)],
        "inspector": [
            str(BIN / "graphql-inspector"),
            "introspect",
            endpoint,
            "--write",
            str(out / "inspector.graphql"),
        ],
    }
    running = {
        name: subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, command in commands.items()
    }
    for name, process in running.items():
        printed, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"{name} failed:\n{printed}"
    return {
        "codegen sdl": out / "codegen.graphql",
        "codegen introspection": out / "codegen.json",
        "inspector sdl": out / "inspector.graphql",
    }


def test_codegen_prints_the_committed_schema(outputs: dict[str, Path]) -> None:
    committed = canonical((ROOT / "schema.graphql").read_text())
    assert canonical(outputs["codegen sdl"].read_text()) == committed


def test_codegen_introspection_builds_the_committed_schema(outputs: dict[str, Path]) -> None:
    introspection = json.loads(outputs["codegen introspection"].read_text())
    built = print_schema(lexicographic_sort_schema(build_client_schema(introspection)))
    assert built == canonical((ROOT / "schema.graphql").read_text())
    # What graphql-js 16 wrote holds no directive location it cannot represent.
    deprecated = next(
        d for d in introspection["__schema"]["directives"] if d["name"] == "deprecated"
    )
    assert "DIRECTIVE_DEFINITION" not in deprecated["locations"]


def test_inspector_introspects_the_committed_schema(outputs: dict[str, Path]) -> None:
    committed = canonical((ROOT / "schema.graphql").read_text())
    assert canonical(outputs["inspector sdl"].read_text()) == committed


def test_graphql_js_16_and_17_build_the_committed_schema(server: Server) -> None:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "graphql17").is_dir():
        pytest.skip("node and node_modules (graphql, graphql17) are needed: run `npm ci`")
    run = subprocess.run(
        [node, str(ROOT / "tests" / "introspect_with_graphql_js.mjs"), server.url + "/graphql"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    committed = canonical((ROOT / "schema.graphql").read_text())
    assert {version: canonical(sdl) for version, sdl in printed.items()} == {
        "16": committed,
        "17": committed,
    }
