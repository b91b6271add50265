"""Property-based fuzzing of GraphQL (over the real schema) and REST (bodies, paths, queries).

Whatever arrives: no 500, every error carries a contract code, no exception text
leaks, another tenant's jobs never change, and a refused request changes nothing.
About 2,100 generated cases; roughly a minute of one core, half of it spent by
Hypothesis generating them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import graphql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries
from starlette.testclient import TestClient

from app.graphql.schema import create_schema
from tests.tokens import JOB_INPUT, auth_settings, bearer, create_job, gateway, token

SCHEMA = create_schema().as_str()
AUTH = bearer(token("acme"))
CODES = {
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "QUERY_TOO_COMPLEX",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "BAD_REQUEST",
}
REST_ERRORS = {
    400: {"BAD_USER_INPUT"},
    404: {"NOT_FOUND"},
    405: {"METHOD_NOT_ALLOWED"},
    409: {"CONFLICT"},
    413: {"PAYLOAD_TOO_LARGE"},
    # No body at all (httpx sends json=None as nothing, without a Content-Type).
    415: {"BAD_REQUEST"},
    422: {"BAD_USER_INPUT"},
}
# Words that only appear when an exception's text escapes.
LEAKS = (
    "Traceback",
    "Error(",
    "sqlite3.",
    "aiosqlite",
    "sqlalchemy.",
    'File "',
    "object has no attribute",
)

# FUZZ_SCALE=0.2 for a quick run, 10 for a long hunt (the counts below are for 1).
SCALE = float(os.environ.get("FUZZ_SCALE") or 1)


def scaled(examples: int) -> int:
    return max(1, round(examples * SCALE))


FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class Gateway:
    def __init__(self, client: TestClient, database: Path) -> None:
        self.client = client
        self.database = database
        # Jobs of both tenants, in every state, for the fuzzer to aim at.
        self.acme = [create_job(client, "acme")["id"] for _ in range(4)]
        self.umbrella = [create_job(client, "umbrella")["id"] for _ in range(2)]
        client.patch(f"/encoding/jobs/{self.acme[1]}", json={"status": 1}, headers=AUTH)
        client.patch(f"/encoding/jobs/{self.acme[2]}", json={"status": 10}, headers=AUTH)
        client.delete(f"/encoding/jobs/{self.acme[3]}", headers=AUTH)
        client.delete(f"/encoding/jobs/{self.umbrella[1]}", headers=bearer(token("umbrella")))

        self.watcher = sqlite3.connect(database, isolation_level=None)

    def rows(self, tenant: str) -> list[tuple[Any, ...]]:
        query = "SELECT * FROM jobs WHERE tenant = ? ORDER BY id"
        return self.watcher.execute(query, (tenant,)).fetchall()

    def version(self) -> int:
        """Changes whenever another connection (the gateway) commits a change to the file."""
        version: int = self.watcher.execute("PRAGMA data_version").fetchone()[0]
        return version


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("fuzz")
    with gateway(auth_settings(folder, max_body_bytes=16384)) as client:
        fuzzed = Gateway(client, folder / "jobs.db")
        yield fuzzed
        fuzzed.watcher.close()


def uuid_nodes(gw: Gateway) -> st.SearchStrategy[graphql.ValueNode]:
    ids = st.sampled_from(gw.acme + gw.umbrella) | st.uuids().map(str)
    return (ids | st.text(max_size=40)).map(nodes.String)


def assert_graphql_answer(gw: Gateway, query: str, umbrella: list[tuple[Any, ...]]) -> None:
    before = gw.version()
    response = gw.client.post("/graphql", json={"query": query}, headers=AUTH)
    assert response.status_code < 500, response.text
    body = response.json()
    for error in body.get("errors", []):
        assert error["extensions"]["code"] in CODES, error
        assert not any(leak in error["message"] for leak in LEAKS), error
    assert gw.rows("umbrella") == umbrella
    [operation] = graphql.parse(query).definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    if operation.operation == graphql.OperationType.QUERY:
        assert gw.version() == before
    elif len(operation.selection_set.selections) == 1 and body.get("errors"):
        # A refused mutation changed nothing (with several, earlier ones may have run).
        assert gw.version() == before


def test_generated_queries(gw: Gateway) -> None:
    umbrella = gw.rows("umbrella")

    @settings(FUZZ, max_examples=scaled(300))
    @given(query=queries(SCHEMA, custom_scalars={"UUID": uuid_nodes(gw)}))
    def check(query: str) -> None:
        assert_graphql_answer(gw, query, umbrella)

    check()


def test_generated_mutations(gw: Gateway) -> None:
    umbrella = gw.rows("umbrella")

    @settings(FUZZ, max_examples=scaled(350))
    @given(query=mutations(SCHEMA, custom_scalars={"UUID": uuid_nodes(gw)}))
    def check(query: str) -> None:
        assert_graphql_answer(gw, query, umbrella)

    check()


def test_operations_that_break_the_schema_change_nothing(gw: Gateway) -> None:
    umbrella = gw.rows("umbrella")
    scalars = {"UUID": uuid_nodes(gw)}
    strategy = queries(SCHEMA, custom_scalars=scalars, mode=Mode.NEGATIVE) | mutations(
        SCHEMA, custom_scalars=scalars, mode=Mode.NEGATIVE
    )

    @settings(FUZZ, max_examples=scaled(300))
    @given(query=strategy)
    def check(query: str) -> None:
        before = gw.version()
        response = gw.client.post("/graphql", json={"query": query}, headers=AUTH)
        assert response.status_code < 500, response.text
        body = response.json()
        assert body.get("data") is None, body
        assert {error["extensions"]["code"] for error in body["errors"]} <= CODES
        assert gw.version() == before
        assert gw.rows("umbrella") == umbrella

    check()


# JSON values of every kind, and the values REST fields are most likely to trip over.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from([0, 1, 10, 100, 101, -1, 40, "1", "0", 1.0, True])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def rest_ids(gw: Gateway) -> st.SearchStrategy[str]:
    return st.sampled_from(gw.acme + gw.umbrella) | st.uuids().map(str) | st.text(max_size=40)


def uuid_values(gw: Gateway) -> st.SearchStrategy[Any]:
    return rest_ids(gw) | JSON


def job_bodies(gw: Gateway) -> st.SearchStrategy[Any]:
    inputs = st.lists(uuid_values(gw), max_size=5) | st.lists(
        st.just(JOB_INPUT["inputs"][0]), min_size=99, max_size=102
    )
    fields = st.fixed_dictionaries(
        {},
        optional={
            "inputs": inputs | JSON,
            "profile": uuid_values(gw),
            "video": uuid_values(gw),
            "extra": JSON,
        },
    )
    return fields | JSON


def patch_bodies() -> st.SearchStrategy[Any]:
    fields = st.fixed_dictionaries(
        {}, optional={"progress": SCALARS, "status": SCALARS, "other": SCALARS}
    )
    return fields | JSON


def assert_rest_answer(
    gw: Gateway, method: str, url: str, headers: dict[str, str] | None = None, **request: Any
) -> None:
    umbrella = gw.rows("umbrella")
    before = gw.version()
    response = gw.client.request(method, url, headers={**AUTH, **(headers or {})}, **request)
    assert response.status_code in (200, 201, *REST_ERRORS), (response.status_code, response.text)
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}
        assert set(body["error"]) == {"code", "message"}
        assert body["error"]["code"] in REST_ERRORS[response.status_code], body
        assert not any(leak in body["error"]["message"] for leak in LEAKS), body
        assert gw.version() == before
    assert gw.rows("umbrella") == umbrella


def test_rest_create_bodies(gw: Gateway) -> None:
    @settings(FUZZ, max_examples=scaled(450))
    @given(body=job_bodies(gw))
    def check(body: Any) -> None:
        assert_rest_answer(gw, "POST", "/encoding/jobs", json=body)

    check()


def test_rest_patch_bodies(gw: Gateway) -> None:
    @settings(FUZZ, max_examples=scaled(450))
    @given(job_id=rest_ids(gw), body=patch_bodies() | st.binary(max_size=40))
    def check(job_id: str, body: Any) -> None:
        url = f"/encoding/jobs/{quote(job_id, safe='')}"
        if isinstance(body, bytes):
            # Declared JSON, so the bytes reach the JSON parser (else 415).
            assert_rest_answer(
                gw, "PATCH", url, content=body, headers={"content-type": "application/json"}
            )
        else:
            assert_rest_answer(gw, "PATCH", url, json=body)

    check()


def test_rest_paths_and_queries(gw: Gateway) -> None:
    params = st.dictionaries(
        st.sampled_from(["limit", "cursor", "status", "include_deleted", "video", "profile"]),
        st.text(max_size=30) | st.integers().map(str) | st.sampled_from(["true", "0", "10"]),
    )

    @settings(FUZZ, max_examples=scaled(300))
    @given(
        method=st.sampled_from(["GET", "DELETE"]),
        job_id=rest_ids(gw),
        query=params,
    )
    def check(method: str, job_id: str, query: dict[str, str]) -> None:
        assert_rest_answer(gw, "GET", "/encoding/jobs", params=query)
        assert_rest_answer(gw, method, f"/encoding/jobs/{quote(job_id, safe='')}")

    check()


def test_the_watcher_sees_every_commit_and_nothing_else(gw: Gateway) -> None:
    # The "store unchanged" checks above are only as good as this.
    before = gw.version()
    assert gw.client.get(f"/encoding/jobs/{gw.acme[0]}", headers=AUTH).status_code == 200
    assert gw.version() == before
    job = create_job(gw.client, "acme")
    after_create = gw.version()
    assert after_create != before
    gw.client.patch(f"/encoding/jobs/{job['id']}", json={"progress": 3}, headers=AUTH)
    assert gw.version() != after_create
