"""Who may do what: every credential against every query, mutation and REST route.

Missing or bad tokens are UNAUTHENTICATED / 401 (GraphQL too: refused before it runs);
a valid token without the operation's scope is FORBIDDEN (403 over REST, an error in
the GraphQL result); and a refused request changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.tokens import (
    JOB_INPUT,
    OTHER_SECRET,
    auth_settings,
    bearer,
    create_job,
    expired_token,
    gateway,
    token,
)

READ, WRITE, REPORT = "jobs:read", "jobs:write", "jobs:report"

# Header sent, and the scope the token grants (None: not a valid token at all).
CREDENTIALS: dict[str, tuple[dict[str, str], str | None]] = {
    "no token": ({}, None),
    "garbage": ({"Authorization": "Bearer not.a.jwt"}, None),
    "not bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
    "expired": (bearer(expired_token()), None),
    "wrong secret": (bearer(token(secret=OTHER_SECRET)), None),
    "read-only": (bearer(token(scope=READ)), READ),
    "write": (bearer(token(scope=WRITE)), WRITE),
    "report": (bearer(token(scope=REPORT)), REPORT),
}

# name: (document, variables given the job's id, the scope it needs)
GRAPHQL: dict[str, tuple[str, Any, str]] = {
    "job": ("query($id: UUID!) { job(id: $id) { id } }", lambda id: {"id": id}, READ),
    "jobs": ("{ jobs { edges { node { id } } } }", lambda id: {}, READ),
    "jobs.totalCount": ("{ jobs { totalCount } }", lambda id: {}, READ),
    "createJob": (
        "mutation($input: CreateJobInput!) { createJob(input: $input) { id } }",
        lambda id: {"input": JOB_INPUT},
        WRITE,
    ),
    "deleteJob": (
        "mutation($id: UUID!) { deleteJob(id: $id) { deletedAt } }",
        lambda id: {"id": id},
        WRITE,
    ),
    "updateJobProgress": (
        "mutation($id: UUID!) { updateJobProgress(id: $id, progress: 10) { progress } }",
        lambda id: {"id": id},
        REPORT,
    ),
}

# name: (method, path given the job's id, JSON body, the scope it needs, success status)
REST: dict[str, tuple[str, Any, Any, str, int]] = {
    "POST /encoding/jobs": ("POST", lambda id: "/encoding/jobs", JOB_INPUT, WRITE, 201),
    "GET /encoding/jobs": ("GET", lambda id: "/encoding/jobs", None, READ, 200),
    "GET /encoding/jobs/{id}": ("GET", lambda id: f"/encoding/jobs/{id}", None, READ, 200),
    "DELETE /encoding/jobs/{id}": ("DELETE", lambda id: f"/encoding/jobs/{id}", None, WRITE, 200),
    "PATCH /encoding/jobs/{id}": (
        "PATCH",
        lambda id: f"/encoding/jobs/{id}",
        {"progress": 10},
        REPORT,
        200,
    ),
}


def expected(granted: str | None, needed: str) -> str | None:
    """The error code the contract promises, or None for success."""
    if granted is None:
        return "UNAUTHENTICATED"
    return None if granted == needed else "FORBIDDEN"


def snapshot(database: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix") / "jobs.db"


@pytest.fixture(scope="module")
def client(database: Path) -> Iterator[TestClient]:
    with gateway(auth_settings(database.parent)) as test_client:
        yield test_client


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("operation", GRAPHQL)
def test_graphql(client: TestClient, database: Path, operation: str, credential: str) -> None:
    document, variables, needed = GRAPHQL[operation]
    headers, granted = CREDENTIALS[credential]
    job_id = create_job(client)["id"]
    before = snapshot(database)

    response = client.post(
        "/graphql", json={"query": document, "variables": variables(job_id)}, headers=headers
    )

    body = response.json()
    code = expected(granted, needed)
    if code is None:
        assert response.status_code == 200
        assert "errors" not in body, body
        assert body["data"]
    elif code == "UNAUTHENTICATED":
        # Refused before it runs, as REST refuses it: 401, the challenge, no `data`.
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="jobs"')
        assert body == {
            "errors": [{"message": body["errors"][0]["message"], "extensions": {"code": code}}]
        }
        assert snapshot(database) == before
    else:
        # A scope the token lacks is an error inside the executed operation.
        assert response.status_code == 200
        assert [error["extensions"]["code"] for error in body["errors"]] == [code]
        # Nullable `job` answers {"job": null}; the others null the whole `data`.
        assert not any((body["data"] or {}).values())
        assert snapshot(database) == before


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("route", REST)
def test_rest(client: TestClient, database: Path, route: str, credential: str) -> None:
    method, path, body, needed, success = REST[route]
    headers, granted = CREDENTIALS[credential]
    job_id = create_job(client)["id"]
    before = snapshot(database)

    response = client.request(method, path(job_id), json=body, headers=headers)

    code = expected(granted, needed)
    if code is None:
        assert response.status_code == success, response.text
    else:
        status = 401 if code == "UNAUTHENTICATED" else 403
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert snapshot(database) == before


def test_a_token_with_every_scope_may_do_everything(client: TestClient) -> None:
    for document, variables, _ in GRAPHQL.values():
        job_id = create_job(client)["id"]
        response = client.post(
            "/graphql",
            json={"query": document, "variables": variables(job_id)},
            headers=bearer(token()),
        )
        assert "errors" not in response.json(), response.json()


def test_bad_token_wins_over_bad_input(client: TestClient) -> None:
    # Authentication comes first: a stranger learns nothing about the input rules.
    response = client.post("/encoding/jobs", content=b"{not json")
    assert response.status_code == 401
    response = client.get("/encoding/jobs/not-a-uuid", headers=bearer(expired_token()))
    assert response.status_code == 401


def test_reasons_are_named(client: TestClient) -> None:
    def message(headers: dict[str, str]) -> str:
        response = client.get("/encoding/jobs", headers=headers)
        text: str = response.json()["error"]["message"]
        return text

    assert "Authorization: Bearer" in message({})
    assert "expired" in message(bearer(expired_token()))
    assert "signature" in message(bearer(token(secret=OTHER_SECRET)))
    assert "jobs:read" in message(bearer(token(scope=WRITE)))


def test_graphiql_page_and_introspection_need_no_token(client: TestClient) -> None:
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    typename = client.post("/graphql", json={"query": "{ __schema { queryType { name } } }"})
    assert typename.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


@pytest.mark.parametrize(
    ("document", "runs"),
    [
        ("{ __typename }", True),
        (
            'query Tools { __type(name: "Job") { name } ...Root }  fragment Root on Query { __schema { queryType { name } } }',
            True,
        ),
        ("{ ... on Query { __typename } }", True),
        ("{ __typename jobs { totalCount } }", False),
        ("{ ...Jobs } fragment Jobs on Query { jobs { totalCount } }", False),
        ('query A { __typename } mutation B { deleteJob(id: "x") { id } }', False),
        ("{ __schema { ", False),
    ],
    ids=["typename", "fragment", "inline", "mixed", "spread", "two operations", "unparsable"],
)
def test_only_introspection_runs_without_a_token(
    client: TestClient, document: str, runs: bool
) -> None:
    for accept in ("application/json", "application/graphql-response+json"):
        response = client.post("/graphql", json={"query": document}, headers={"Accept": accept})
        if runs:
            assert response.status_code == 200
            assert "errors" not in response.json()
        else:
            # Authentication first: a stranger learns nothing about the document's faults.
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="jobs"'
            assert response.headers["content-type"].startswith(accept)
            assert [e["extensions"]["code"] for e in response.json()["errors"]] == [
                "UNAUTHENTICATED"
            ]


def test_the_challenge_says_why_a_token_was_refused(client: TestClient) -> None:
    response = client.post(
        "/graphql", json={"query": "{ jobs { totalCount } }"}, headers=bearer(expired_token())
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="jobs", error="invalid_token", error_description="token has expired"'
    )
