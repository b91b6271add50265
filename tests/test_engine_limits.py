"""Values at the edge of what each engine's columns hold are refused by the API,
with the contract's codes, before they reach the database."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from tests.conftest import GraphQL

PAST_BIGINT = base64.urlsafe_b64encode(f"job:{2**63}".encode()).decode()
LAST_BIGINT = base64.urlsafe_b64encode(f"job:{2**63 - 1}".encode()).decode()


def test_a_cursor_past_the_64_bit_sequence_is_bad_input(client: TestClient, gql: GraphQL) -> None:
    response = client.get("/encoding/jobs", params={"cursor": PAST_BIGINT})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    assert response.json()["error"]["message"].startswith("cursor: ")

    body = gql(
        "query($after: String) { jobs(after: $after) { edges { cursor } } }", after=PAST_BIGINT
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["message"].startswith("after: ")


def test_the_largest_sequence_is_still_a_cursor(client: TestClient) -> None:
    client.post(
        "/encoding/jobs",
        json={
            "inputs": ["340dd145-c06b-4d72-a8cc-0f6b270eb065"],
            "profile": "2876db3d-ed16-4cf2-af82-98a383009e3c",
            "video": "62dcb602-e95b-483c-badf-9497914717a5",
        },
    )
    page = client.get("/encoding/jobs", params={"cursor": LAST_BIGINT})
    assert page.status_code == 200, page.text
    assert len(page.json()["jobs"]) == 1
