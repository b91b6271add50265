"""Two tenants on one gateway: neither sees, counts nor changes the other's jobs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from tests.tokens import (
    JOB_INPUT,
    SECRET,
    auth_settings,
    bearer,
    create_job,
    gateway,
    read_job,
    token,
)


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    # Tenancy lives in the SQL: these run on SQLite and on PostgreSQL.
    with gateway(auth_settings(database_url)) as test_client:
        yield test_client


def gql(client: TestClient, tenant: str, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(token(tenant))
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def test_another_tenants_job_is_not_found_everywhere(client: TestClient) -> None:
    job = create_job(client, tenant="acme")
    job_id = job["id"]

    assert gql(client, "umbrella", "query($id: UUID!) { job(id: $id) { id } }", id=job_id) == {
        "data": {"job": None}
    }
    for mutation in (
        "mutation($id: UUID!) { deleteJob(id: $id) { id } }",
        "mutation($id: UUID!) { updateJobProgress(id: $id, progress: 50) { id } }",
        "mutation($id: UUID!) { updateJobProgress(id: $id, progress: 1, status: FAILED) { id } }",
    ):
        assert codes(gql(client, "umbrella", mutation, id=job_id)) == ["NOT_FOUND"]

    other = bearer(token("umbrella"))
    for method, body in (("GET", None), ("DELETE", None), ("PATCH", {"progress": 50})):
        response = client.request(method, f"/encoding/jobs/{job_id}", json=body, headers=other)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"

    # The owner's job went through all that untouched.
    assert read_job(client, job_id, tenant="acme") == job


def test_lists_and_totals_hold_only_the_callers_jobs(client: TestClient) -> None:
    acme = {create_job(client, tenant="acme")["id"] for _ in range(3)}
    umbrella = {create_job(client, tenant="umbrella")["id"]}
    query = """query($filter: JobFilter) {
        jobs(first: 100, filter: $filter) { totalCount edges { node { id } } }
    }"""

    for tenant, mine in (("acme", acme), ("umbrella", umbrella), ("nobody", set())):
        for job_filter in (None, {"includeDeleted": True}, {"video": JOB_INPUT["video"]}):
            jobs = gql(client, tenant, query, filter=job_filter)["data"]["jobs"]
            assert {edge["node"]["id"] for edge in jobs["edges"]} == mine
            assert jobs["totalCount"] == len(mine)
        listed = client.get("/encoding/jobs?limit=100", headers=bearer(token(tenant))).json()
        assert {job["id"] for job in listed["jobs"]} == mine
        assert listed["next_cursor"] is None


def test_a_tenant_cannot_page_into_another_with_its_cursor(client: TestClient) -> None:
    for _ in range(3):
        create_job(client, tenant="acme")
    page = client.get("/encoding/jobs?limit=1", headers=bearer(token("acme"))).json()
    cursor = page["next_cursor"]
    assert cursor
    other = client.get(f"/encoding/jobs?cursor={cursor}", headers=bearer(token("umbrella")))
    # Sealed for acme (app.jobs.cursors): to umbrella it is no cursor at all.
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "BAD_USER_INPUT"
    assert other.json()["error"]["message"].startswith("cursor: ")


def test_same_tenant_different_tokens_share_jobs(client: TestClient) -> None:
    job_id = create_job(client, tenant="acme")["id"]
    worker = bearer(token("acme", scope="jobs:report"))
    response = client.patch(f"/encoding/jobs/{job_id}", json={"progress": 30}, headers=worker)
    assert response.status_code == 200
    assert read_job(client, job_id, tenant="acme")["progress"] == 30


@pytest.mark.parametrize("tenant", ["ac\x00me", "acme\ud800"], ids=["NUL", "lone surrogate"])
def test_a_tenant_no_database_can_store_is_refused_not_a_500(
    client: TestClient, tenant: str
) -> None:
    # PostgreSQL cannot hold either in text; it answered 500 before the verifier refused them.
    headers = bearer(unchecked_token(tenant))
    for method, path, body in (
        ("GET", "/encoding/jobs", None),
        ("POST", "/encoding/jobs", JOB_INPUT),
    ):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
        assert "'tenant' must be printable" in response.json()["error"]["message"]
    graphql = client.post("/graphql", json={"query": "{ jobs { totalCount } }"}, headers=headers)
    assert codes(graphql.json()) == ["UNAUTHENTICATED"]


def unchecked_token(tenant: str) -> str:
    """A correctly signed token whose tenant `issue_token` would refuse to write."""
    now = int(time.time())
    claims = {"sub": "tests", "tenant": tenant, "scope": "jobs:read jobs:write", "exp": now + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")
