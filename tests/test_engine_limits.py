"""Values at the edge of what each engine's columns hold are refused by the API,
with the contract's codes, before they reach the database."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from tests.conftest import GraphQL

# A forged cursor of the old readable format: refused whatever number it holds
# (sealed cursors: tests/test_cursors.py, the largest position included).
PAST_BIGINT = base64.urlsafe_b64encode(f"job:{2**63}".encode()).decode()


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
