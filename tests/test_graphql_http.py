"""GraphQL over HTTP at /graphql: media types, status codes, GET, refusals.

The spec's own audit suite (npm `graphql-http`) runs against a real server; the
focused tests below pin the behaviours clients notice, through the real app.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.graphql.http import negotiate
from support.servers import ROOT, Server

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
AUDIT_SCRIPT = ROOT / "tests" / "graphql_http_audit.mjs"

CREATE = """mutation($input: CreateJobInput!) { createJob(input: $input) { id } }"""
NEW_JOB = {
    "inputs": ["340dd145-c06b-4d72-a8cc-0f6b270eb065"],
    "profile": "2876db3d-ed16-4cf2-af82-98a383009e3c",
    "video": "62dcb602-e95b-483c-badf-9497914717a5",
}
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def post(client: TestClient, body: Any, accept: str | None = None) -> Any:
    headers = {"accept": accept} if accept else {}
    return client.post("/graphql", json=body, headers=headers)


def code_of(response: Any) -> str:
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


def total_jobs(client: TestClient) -> int:
    response = post(client, {"query": "{ jobs { totalCount } }"})
    count: int = response.json()["data"]["jobs"]["totalCount"]
    return count


# --- the spec's audit suite ---------------------------------------------------


def test_graphql_http_audit_passes_every_must_and_should(server: Server) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the GraphQL-over-HTTP audit needs Node.js")
    if not (ROOT / "node_modules" / "graphql-http").is_dir():
        pytest.skip("node_modules/graphql-http is missing: run `npm ci` at the top")
    run = subprocess.run(
        [node, str(AUDIT_SCRIPT), server.url + "/graphql"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert results, "the audit suite ran no audits"

    tally = Counter((r["name"].split()[0], r["status"] == "ok") for r in results)
    print(
        "GraphQL-over-HTTP audit: "
        + ", ".join(
            f"{level} {tally[(level, True)]}/{tally[(level, True)] + tally[(level, False)]}"
            for level in ("MUST", "SHOULD", "MAY")
        )
    )
    failing = [
        f"{r['id']} {r['name']}: {r['reason']} (body: {r.get('body', '')})"
        for r in results
        if r["status"] != "ok" and r["name"].startswith(("MUST", "SHOULD"))
    ]
    assert not failing, "failing audits:\n" + "\n".join(failing)


# --- media types ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", GRAPHQL_RESPONSE),
        (f"{JSON};q=0.5, {GRAPHQL_RESPONSE};q=0.9", GRAPHQL_RESPONSE),
        (f"{JSON}, {GRAPHQL_RESPONSE}", JSON),  # equal q: the first listed
        ("text/html,application/xhtml+xml,*/*;q=0.8", JSON),  # a browser
        (f"{JSON};q=0, */*", GRAPHQL_RESPONSE),
        ("text/plain", None),
        (f"{GRAPHQL_RESPONSE};q=0", None),
    ],
)
def test_answer_media_type_follows_accept(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


def test_answers_in_the_media_type_asked_for(client: TestClient) -> None:
    for accept, expected in [(GRAPHQL_RESPONSE, GRAPHQL_RESPONSE), (JSON, JSON), (None, JSON)]:
        response = post(client, {"query": "{ __typename }"}, accept)
        assert response.status_code == 200
        assert response.headers["content-type"] == expected
        assert response.json() == {"data": {"__typename": "Query"}}


def test_an_accept_header_without_our_media_types_is_406(client: TestClient) -> None:
    response = post(client, {"query": "{ __typename }"}, "text/plain")
    assert response.status_code == 406
    assert code_of(response) == "BAD_REQUEST"
    message = response.json()["errors"][0]["message"]
    for supported in (JSON, GRAPHQL_RESPONSE, "text/event-stream", 'subscriptionSpec="1.0"'):
        assert supported in message


# --- status codes per media type ------------------------------------------------

REQUEST_ERRORS = [
    pytest.param({"query": "{ jobs { "}, "GRAPHQL_PARSE_FAILED", id="parse"),
    pytest.param({"query": "{ jobs { nope } }"}, "GRAPHQL_VALIDATION_FAILED", id="validation"),
    pytest.param(
        {"query": "query($id: UUID!) { job(id: $id) { id } }", "variables": {"id": "nope"}},
        "BAD_USER_INPUT",
        id="variable coercion",
    ),
]


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
def test_request_errors_are_400_with_graphql_response_json(
    client: TestClient, body: dict[str, Any], code: str
) -> None:
    response = post(client, body, GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    assert code_of(response) == code
    # The operation never ran: no `data` entry at all.
    assert "data" not in response.json()


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
def test_request_errors_stay_200_with_application_json(
    client: TestClient, body: dict[str, Any], code: str
) -> None:
    response = post(client, body, JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert code_of(response) == code
    assert "data" not in response.json()


def test_variable_errors_name_the_variable(client: TestClient) -> None:
    body = {"query": "query($id: UUID!) { job(id: $id) { id } }", "variables": {"id": "nope"}}
    message = post(client, body, GRAPHQL_RESPONSE).json()["errors"][0]["message"]
    assert "$id" in message


def test_errors_while_executing_stay_200_with_graphql_response_json(client: TestClient) -> None:
    # The operation ran and failed in a resolver: a GraphQL result, not a bad request.
    body = {"query": f'mutation {{ deleteJob(id: "{UNKNOWN_ID}") {{ id }} }}'}
    response = post(client, body, GRAPHQL_RESPONSE)
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert code_of(response) == "NOT_FOUND"


# --- GET ------------------------------------------------------------------------


def test_get_runs_queries_with_variables(client: TestClient) -> None:
    job_id = post(client, {"query": CREATE, "variables": {"input": NEW_JOB}}).json()["data"][
        "createJob"
    ]["id"]
    response = client.get(
        "/graphql",
        params={
            "query": "query($id: UUID!) { job(id: $id) { id progress } }",
            "variables": json.dumps({"id": job_id}),
        },
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    assert response.json() == {"data": {"job": {"id": job_id, "progress": 0}}}


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
def test_get_refuses_mutations_with_405(client: TestClient, accept: str) -> None:
    response = client.get(
        "/graphql",
        params={"query": CREATE, "variables": json.dumps({"input": NEW_JOB})},
        headers={"accept": accept},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == accept
    assert code_of(response) == "BAD_REQUEST"
    assert "POST" in response.json()["errors"][0]["message"]
    assert total_jobs(client) == 0  # nothing ran


def test_get_with_html_accept_serves_the_graphiql_page(client: TestClient) -> None:
    response = client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_get_without_a_query_is_400_naming_it(client: TestClient) -> None:
    response = client.get("/graphql", headers={"accept": JSON})
    assert response.status_code == 400
    assert code_of(response) == "BAD_USER_INPUT"
    assert response.json()["errors"][0]["message"].startswith("query:")


def test_get_with_malformed_variables_is_400_naming_them(client: TestClient) -> None:
    response = client.get("/graphql", params={"query": "{ __typename }", "variables": "{nope"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("variables: not valid JSON")


# --- malformed requests -----------------------------------------------------------


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
def test_a_body_that_is_not_json_is_400(client: TestClient, accept: str) -> None:
    response = client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"',
        headers={"content-type": JSON, "accept": accept},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == accept
    assert code_of(response) == "BAD_USER_INPUT"
    assert response.json()["errors"][0]["message"].startswith("body: not valid JSON")


def test_deeply_nested_json_is_400_not_500(client: TestClient) -> None:
    response = client.post(
        "/graphql", content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": JSON}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("body: not valid JSON")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ["{ __typename }"]}, "query"),
        ({"notquery": "{ __typename }"}, "query"),
        ({"query": "{ __typename }", "variables": "{}"}, "variables"),
        ({"query": "{ __typename }", "operationName": 0}, "operationName"),
        ({"query": "{ __typename }", "extensions": ["x"]}, "extensions"),
        ([{"query": "{ __typename }"}], "body"),
    ],
)
def test_bad_request_parameters_are_400_naming_them(
    client: TestClient, body: Any, field: str
) -> None:
    response = post(client, body, JSON)
    assert response.status_code == 400
    assert code_of(response) == "BAD_USER_INPUT"
    assert response.json()["errors"][0]["message"].startswith(f"{field}:")


def test_operation_name_that_matches_nothing_is_400(client: TestClient) -> None:
    body = {"query": "query A { __typename }", "operationName": "B"}
    response = post(client, body, JSON)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("operationName:")


def test_post_without_json_content_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/graphql", content=b'{"query": "{ __typename }"}', headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert code_of(response) == "BAD_REQUEST"
    assert response.json()["errors"][0]["message"].startswith("Content-Type:")


def test_post_rules_on_media_type_and_encoding_are_rests(client: TestClient) -> None:
    document = '{"query": "{ __typename }"}'
    for content_type in (
        "application/json; charset=utf-16",
        None,
        "multipart/form-data; boundary=x",  # uploads are off: strawberry said 400
    ):
        headers = {} if content_type is None else {"content-type": content_type}
        response = client.post("/graphql", content=document.encode("utf-16"), headers=headers)
        assert response.status_code == 415
        assert code_of(response) == "BAD_REQUEST"
    # Declared JSON but not UTF-8: not guessed.
    response = client.post(
        "/graphql", content=document.encode("utf-16"), headers={"content-type": JSON}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["errors"][0]["message"]
    for content_type in ("application/json; charset=UTF-8", "application/vnd.api+json"):
        response = client.post("/graphql", content=document, headers={"content-type": content_type})
        assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
def test_a_subscription_over_http_is_refused_pointing_at_websocket(
    client: TestClient, accept: str
) -> None:
    response = client.post(
        "/graphql",
        json={"query": "subscription { jobUpdates { id } }"},
        headers={"accept": accept},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "WebSocket" in error["message"]
