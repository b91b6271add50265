"""Hostile GraphQL documents: refused as QUERY_TOO_COMPLEX, cheaply, on every path.

A real uvicorn process with AUTH_JWT_SECRET set; POST and GET, and WebSocket
subscriptions over both subprotocols. Introspection documents are sent without a
token (they need none); others with a token without `jobs:read`, so a document
checked before authorization says so (without any token they are 401 before they are
parsed past the length and token caps: app.graphql.http.refuse_unauthenticated).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from graphql.validation.rules import overlapping_fields_can_be_merged

from app.graphql.limits import COMPARISON_BUDGET
from support.servers import Server, start_server
from tests.tokens import SECRET, auth_settings, bearer, gateway, token
from tests.wsclient import PROTOCOLS, TRANSPORT_WS, graphql_socket

pytestmark = pytest.mark.anyio

# Generous: the old code took hours for the first document here (2^60 fragment
# spreads walked one by one); the gateway now answers it in well under a second.
LIMIT = 10

NOT_A_READER = {"Authorization": f"Bearer {token(scope='jobs:write')}"}


def doubling_fragments(n: int, on: str = "Query", leaf: str = "__typename") -> str:
    """Fragment Fk spreads F(k+1) twice: 2^n fields once expanded, in n short lines."""
    operation = "subscription" if on == "Subscription" else "query"
    parts = [f"{operation} {{ ...F0 }}"]
    parts += [f"fragment F{k} on {on} {{ ...F{k + 1} ...F{k + 1} }}" for k in range(n)]
    parts.append(f"fragment F{n} on {on} {{ {leaf} }}")
    return " ".join(parts)


def of_type_chain(depth: int) -> str:
    """`__type` then `depth` nested `ofType`: its deepest field is at level depth + 1."""
    return '{ __type(name: "Job") { ' + "ofType { " * depth + "name" + " }" * depth + " } }"


def nested_jobs(depth: int, operation: str = "query") -> str:
    return f"{operation} {{ " + "jobs { " * depth + "totalCount" + " }" * depth + " }"


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    # One per test: on the old code a document here blocks the server for good.
    running = start_server(
        {"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", "AUTH_JWT_SECRET": SECRET},
        tmp_path / "server.log",
    )
    yield running
    running.stop()


def post_and_get(
    server: Server, query: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The answers to `query` over POST and GET, without a token unless given one."""
    with httpx.Client(base_url=server.url, timeout=LIMIT, headers=headers) as http:
        posted = http.post("/graphql", json={"query": query})
        got = http.get("/graphql", params={"query": query})
    bodies = []
    for response in (posted, got):
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return bodies


async def subscribe(server: Server, protocol: str, query: str) -> list[str]:
    """The codes of the error a subscription of `query` is answered with."""
    with anyio.fail_after(LIMIT):
        async with graphql_socket(server.ws_url, protocol, payload=NOT_A_READER) as ws:
            await ws.subscribe("1", query)
            message = await ws.receive()
    assert message["type"] == "error", message
    errors = message["payload"] if protocol == TRANSPORT_WS else [message["payload"]]
    return [error["extensions"]["code"] for error in errors]


async def test_doubling_fragments_are_refused_at_once_before_any_token_check(
    server: Server,
) -> None:
    for body in post_and_get(server, doubling_fragments(60)):
        assert codes(body) == ["QUERY_TOO_COMPLEX"]
        assert "MAX_QUERY_SELECTIONS" in body["errors"][0]["message"]
        assert "data" not in body
    hostile = doubling_fragments(60, on="Subscription", leaf="jobUpdates { id }")
    for protocol in PROTOCOLS:
        assert await subscribe(server, protocol, hostile) == ["QUERY_TOO_COMPLEX"]
    # The server is free for everyone else meanwhile.
    with httpx.Client(base_url=server.url, timeout=LIMIT) as http:
        assert http.get("/healthz").status_code == 200
        answer = http.post("/graphql", json={"query": doubling_fragments(3)})
        assert answer.json() == {"data": {"__typename": "Query"}}


async def test_a_document_too_long_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    # A big string literal is one token: only its length bounds what parsing it costs.
    server = start_server(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
            "AUTH_JWT_SECRET": SECRET,
            "MAX_QUERY_LENGTH": "1000",
        },
        tmp_path / "server.log",
    )
    try:
        literal = "x" * 2000
        for body in post_and_get(server, f'{{ job(id: "{literal}") {{ id }} }}', NOT_A_READER):
            assert codes(body) == ["QUERY_TOO_COMPLEX"], body
            assert "MAX_QUERY_LENGTH" in body["errors"][0]["message"]
            assert literal not in str(body)  # nor echoed back
        hostile = "subscription { jobUpdates { id } }" + " " * 2000
        for protocol in PROTOCOLS:
            assert await subscribe(server, protocol, hostile) == ["QUERY_TOO_COMPLEX"]
        answer = post_and_get(server, "{ __typename }")
        assert answer == [{"data": {"__typename": "Query"}}] * 2
    finally:
        server.stop()


async def test_depth_counts_introspection_and_nesting_the_parser_refuses(
    server: Server,
) -> None:
    # Default MAX_QUERY_DEPTH is 15: `__type` is level 0, 14 `ofType`, `name` level 15.
    for allowed in post_and_get(server, of_type_chain(14)):
        assert allowed == {"data": {"__type": {"ofType": None}}}
    for query in (of_type_chain(15), of_type_chain(100), of_type_chain(700), nested_jobs(700)):
        for body in post_and_get(server, query, NOT_A_READER):
            assert codes(body) == ["QUERY_TOO_COMPLEX"], (query[:40], body)
            assert "data" not in body
    for protocol in PROTOCOLS:
        for query in (nested_jobs(20, "subscription"), nested_jobs(700, "subscription")):
            assert await subscribe(server, protocol, query) == ["QUERY_TOO_COMPLEX"]


def test_depth_limit_names_itself_and_counts_introspection(tmp_path: Path) -> None:
    with gateway(auth_settings(tmp_path, max_query_depth=10, max_query_tokens=5000)) as client:
        body = client.post("/graphql", json={"query": of_type_chain(100)}).json()
        assert codes(body) == ["QUERY_TOO_COMPLEX"]
        assert "depth of 10 (MAX_QUERY_DEPTH)" in body["errors"][0]["message"]
        deep_enough = client.post("/graphql", json={"query": of_type_chain(9)}).json()
        assert "errors" not in deep_enough
        # Fragments spreading each other 240 deep: more than graphql-core's rules follow.
        chain = " ".join(f"fragment F{k} on Query {{ ...F{k + 1} }}" for k in range(240))
        query = f"{{ ...F0 }} {chain} fragment F240 on Query {{ __typename }}"
        body = client.post("/graphql", json={"query": query}).json()
        assert codes(body) == ["QUERY_TOO_COMPLEX"]
        assert "too complex" in body["errors"][0]["message"]


def test_selections_count_fragments_once_per_spread(tmp_path: Path) -> None:
    with gateway(auth_settings(tmp_path, max_query_selections=8)) as client:
        eight = client.post("/graphql", json={"query": doubling_fragments(3)}).json()
        assert eight == {"data": {"__typename": "Query"}}
        body = client.post("/graphql", json={"query": doubling_fragments(4)}).json()
        assert codes(body) == ["QUERY_TOO_COMPLEX"]
        assert body["errors"][0]["message"].startswith("16 field selections")
        # Cycles and unknown fragments add nothing to the measure; the rules say what is wrong.
        cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { __typename ...A }"
        body = client.post("/graphql", json={"query": cycle}).json()
        assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
        assert "Cannot spread fragment 'A' within itself" in body["errors"][0]["message"]
        unknown = client.post(
            "/graphql", json={"query": "{ ...Nowhere }"}, headers=NOT_A_READER
        ).json()
        assert codes(unknown) == ["GRAPHQL_VALIDATION_FAILED"]


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pairs of fields graphql-core's overlapping-fields rule compares."""
    counted = [0]
    compare = overlapping_fields_can_be_merged.find_conflict

    def counting(*args: Any) -> Any:
        counted[0] += 1
        return compare(*args)

    monkeypatch.setattr(overlapping_fields_can_be_merged, "find_conflict", counting)
    return counted


@pytest.mark.parametrize("fields", [1990, 999, 499])
def test_duplicated_fields_cost_a_bounded_number_of_comparisons(
    tmp_path: Path, comparisons: list[int], fields: int
) -> None:
    # Unique documents, so no cache helps.
    with gateway(auth_settings(tmp_path)) as client:
        query = "{ " + "__typename " * fields + "}"
        body = client.post("/graphql", json={"query": query}, headers=bearer(token())).json()
    assert codes(body) == ["QUERY_TOO_COMPLEX"]
    # Comparing each pair would be ~fields²/2: 1,979,055, 498,501 or 124,251 (the old
    # code stopped at graphql-core's default budget, 250,000 comparisons). Now 1,990
    # is over MAX_QUERY_TOKENS (1000) and 999 over MAX_QUERY_SELECTIONS (500): none
    # are compared. 499 is within both: it spends the gateway's budget, a comparison
    # costing 2 units, and stops.
    assert comparisons[0] <= COMPARISON_BUDGET // 2 + 1
    if fields < 500:
        assert comparisons[0] > 1000, "graphql-core's rule did not run"
