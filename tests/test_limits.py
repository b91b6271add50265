"""What one request may ask of the gateway, and what it is told when things break."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import get_introspection_query
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.settings import Settings
from tests.tokens import JOB_INPUT, auth_settings, bearer, create_job, gateway, token

AUTH = bearer(token())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with gateway(auth_settings(tmp_path)) as test_client:
        yield test_client


def post(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables}, headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def test_depth_over_the_limit_is_query_too_complex(tmp_path: Path) -> None:
    with gateway(auth_settings(tmp_path, max_query_depth=2)) as client:
        body = post(client, "{ jobs { edges { node { id } } } }")
        assert codes(body) == ["QUERY_TOO_COMPLEX"]
        assert "depth of 2" in body["errors"][0]["message"]
        assert "data" not in body or body["data"] is None
        assert codes(post(client, "{ jobs { totalCount } }")) == []


def test_aliases_over_the_limit_are_query_too_complex(client: TestClient) -> None:
    fifteen = " ".join(f"a{n}: jobs {{ totalCount }}" for n in range(15))
    assert codes(post(client, f"{{ {fifteen} }}")) == []
    sixteen = fifteen + " a15: jobs { totalCount }"
    body = post(client, f"{{ {sixteen} }}")
    assert codes(body) == ["QUERY_TOO_COMPLEX"]
    assert "16 aliases" in body["errors"][0]["message"]


def test_tokens_over_the_limit_are_query_too_complex(client: TestClient) -> None:
    body = post(client, "{ " + "__typename " * 2500 + "}")
    assert codes(body) == ["QUERY_TOO_COMPLEX"]
    assert "1000 tokens" in body["errors"][0]["message"]


def test_a_repeated_bad_document_gets_the_same_answer(client: TestClient) -> None:
    # Validation results are cached per document; the codes must not drift.
    query = '{ job(id: "not-a-uuid") { id } }'
    first, second = post(client, query), post(client, query)
    assert first == second
    assert codes(first) == ["BAD_USER_INPUT"]
    assert first["errors"][0]["message"].startswith("id: ")
    assert not first["errors"][0]["message"].startswith("id: id: ")


def test_graphiql_introspection_fits_the_default_limits(client: TestClient) -> None:
    query = get_introspection_query(descriptions=True, input_value_deprecation=True)
    body = post(client, query)
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


def test_introspection_and_graphiql_can_be_switched_off(tmp_path: Path) -> None:
    with gateway(auth_settings(tmp_path, graphql_introspection=False, graphiql=False)) as client:
        body = post(client, "{ __schema { queryType { name } } }")
        assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
        assert all("introspection" in error["message"] for error in body["errors"])
        assert codes(post(client, "{ jobs { totalCount } }")) == []
        page = client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 404
        assert "<html" not in page.text.lower()
        [error] = page.json()["errors"]
        assert error["extensions"]["code"] == "NOT_FOUND"
        assert "GraphiQL is switched off" in error["message"]


def test_body_over_the_cap_is_413(tmp_path: Path) -> None:
    with gateway(auth_settings(tmp_path, max_body_bytes=4096)) as client:
        padding = "x" * 5000
        rest = client.post("/encoding/jobs", json={**JOB_INPUT, "pad": padding}, headers=AUTH)
        assert rest.status_code == 413
        assert rest.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert "4096" in rest.json()["error"]["message"]
        graphql = client.post("/graphql", json={"query": f"# {padding}\n{{ __typename }}"})
        assert graphql.status_code == 413
        assert codes(graphql.json()) == ["QUERY_TOO_COMPLEX"]

        # No Content-Length (chunked): counted as it arrives.
        def chunks() -> Iterator[bytes]:
            yield b'{"inputs": ["'
            for _ in range(100):
                yield b"0" * 100

        chunked = client.post("/encoding/jobs", content=chunks(), headers=AUTH)
        assert chunked.status_code == 413

        # Under the cap, bodies arrive whole.
        assert client.post("/encoding/jobs", json=JOB_INPUT, headers=AUTH).status_code == 201
        patch = client.patch(
            f"/encoding/jobs/{create_job(client)['id']}", json={"progress": 5}, headers=AUTH
        )
        assert patch.json()["progress"] == 5


def test_unexpected_errors_are_masked_and_logged_with_a_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = auth_settings(tmp_path)
    with gateway(settings, raise_server_exceptions=False) as client:
        # Break the database under the running gateway: a real, unexpected failure.
        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute("ALTER TABLE jobs RENAME TO jobs_gone")
        with caplog.at_level(logging.ERROR):
            answer = client.post(
                "/graphql", json={"query": "{ jobs { totalCount } }"}, headers=AUTH
            )
            rest = client.get("/encoding/jobs", headers=AUTH)

    body = answer.json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    request_id = error["extensions"]["requestId"]
    assert error["message"] == f"internal error (request id {request_id})"
    assert rest.status_code == 500
    assert rest.json()["error"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "no such table" not in rest.text
    rest_id = rest.json()["error"]["message"].split("request id ")[1].rstrip(")")
    # The ids the client is told are its requests' own (X-Request-ID, in every log line).
    assert answer.headers["x-request-id"] == request_id
    assert rest.headers["x-request-id"] == rest_id
    # The server's log has the real cause under the same ids.
    for logged_id in (request_id, rest_id):
        [record] = [r for r in caplog.records if logged_id in r.getMessage()]
        assert record.exc_info is not None
        assert "no such table" in str(record.exc_info[1])


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.options(
        "/graphql",
        headers={"Origin": "https://app.example.test", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_the_configured_origins_only(tmp_path: Path) -> None:
    origins = ("https://app.example.test",)
    with gateway(auth_settings(tmp_path, cors_origins=origins)) as client:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        allowed = client.options(
            "/graphql", headers={"Origin": "https://app.example.test", **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.test"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        refused = client.options("/graphql", headers={"Origin": "https://evil.test", **preflight})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        created = client.post(
            "/encoding/jobs",
            json=JOB_INPUT,
            headers={"Origin": "https://app.example.test", **AUTH},
        )
        assert created.headers["access-control-allow-origin"] == "https://app.example.test"
        assert "location" in created.headers["access-control-expose-headers"].lower()
        # WebSockets from the configured origin too; other sites are refused at the handshake.
        init = {"type": "connection_init", "payload": AUTH}
        with client.websocket_connect(
            "/graphql",
            subprotocols=["graphql-transport-ws"],
            headers={"Origin": "https://app.example.test"},
        ) as ws:
            ws.send_json(init)
            assert ws.receive_json() == {"type": "connection_ack"}
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect(
                "/graphql",
                subprotocols=["graphql-transport-ws"],
                headers={"Origin": "https://evil.test"},
            ) as ws,
        ):
            ws.send_json(init)
            ws.receive_json()


def test_open_mode_serves_loopback_only_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/jobs.db")
    with caplog.at_level(logging.WARNING), gateway(settings, base_url="http://127.0.0.1") as local:
        assert local.get("/encoding/jobs").status_code == 200
    assert any("runs OPEN" in record.getMessage() for record in caplog.records)
    with gateway(settings, base_url="http://192.0.2.10") as remote:
        refused = remote.get("/encoding/jobs")
        assert refused.status_code == 403
        assert "loopback" in refused.json()["error"]["message"]
    with gateway(settings, base_url="http://127.0.0.1:8000") as local:
        # DNS rebinding: a page on evil.example resolved to 127.0.0.1 names its own host.
        rebound = local.get("/encoding/jobs", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 403
        assert "Host" in rebound.json()["error"]["message"]
        # A page open in the developer's browser, on another site.
        drive_by = local.post(
            "/encoding/jobs",
            content=json.dumps(JOB_INPUT),
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        assert drive_by.status_code == 403
        assert "cross-origin" in drive_by.json()["error"]["message"]
        assert local.get("/encoding/jobs", params={"include_deleted": "true"}).json() == {
            "jobs": [],
            "next_cursor": None,
        }
        # Pages served from this machine (a dev server on another port) are fine.
        for origin in ("http://localhost:5173", "http://127.0.0.1:8000"):
            assert local.get("/encoding/jobs", headers={"Origin": origin}).status_code == 200
    # Headers that name no host at all are the client's error, not a 500 (the
    # WebSocket handshake too: tests/test_http_limits.py, with a real server).
    with gateway(settings, base_url="http://127.0.0.1:8000") as local:
        for headers, named in (
            ({"Host": "[::1"}, "Host: malformed"),
            ({"Host": "[zz]:8000"}, "Host: malformed"),
            ({"Origin": "http://["}, "Origin: malformed"),
        ):
            response = local.get("/encoding/jobs", headers=headers)
            assert response.status_code == 400
            assert response.json()["error"] == {
                "code": "BAD_REQUEST",
                "message": f"{named} ({next(iter(headers.values()))!r})",
            }
    # With a secret, other addresses are served (and tokens checked).
    with gateway(auth_settings(tmp_path), base_url="http://192.0.2.10") as remote:
        assert remote.get("/encoding/jobs").status_code == 401
        assert remote.get("/encoding/jobs", headers=AUTH).status_code == 200
