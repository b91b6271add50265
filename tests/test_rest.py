"""The documented REST API at /encoding/jobs: exact shapes, same rules as GraphQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import PUBLIC_URL
from tests.jobs_data import INPUT, PROFILE, VIDEO, new_uuid, request_object

RESPONSE_KEYS = [
    "id", "url", "status", "progress", "profile", "video",
    "inputs", "created_at", "updated_at", "deleted_at",
]  # fmt: skip
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/encoding/jobs", json=request_object(**overrides))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def assert_error(response: Any, status: int, code: str, names: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert body["error"]["code"] == code
    if names:
        assert names in body["error"]["message"]


def test_create_answers_201_the_documented_object_and_location(client: TestClient) -> None:
    response = client.post("/encoding/jobs", json=request_object())
    assert response.status_code == 201
    job = response.json()
    assert list(job) == RESPONSE_KEYS
    assert job["url"] == f"{PUBLIC_URL}/encoding/jobs/{job['id']}"
    assert response.headers["location"] == job["url"]
    assert (job["status"], job["progress"], job["deleted_at"]) == (0, 0, None)
    assert (job["profile"], job["video"], job["inputs"]) == (PROFILE, VIDEO, [INPUT])
    assert TIMESTAMP.match(job["created_at"]) and TIMESTAMP.match(job["updated_at"])


def test_url_resolves_to_the_same_object(client: TestClient) -> None:
    job = create(client)
    response = client.get(job["url"])
    assert response.status_code == 200
    assert response.json() == job


def test_rest_and_graphql_see_the_same_job(client: TestClient) -> None:
    job = create(client, inputs=[new_uuid(), new_uuid()])
    body = client.post(
        "/graphql",
        json={"query": "query($id: UUID!) { job(id: $id) { id inputs createdAt } }",
              "variables": {"id": job["id"]}},
    ).json()  # fmt: skip
    assert body["data"]["job"] == {
        "id": job["id"],
        "inputs": job["inputs"],
        "createdAt": job["created_at"],
    }


def test_unknown_job_is_404(client: TestClient) -> None:
    for method in ("GET", "DELETE", "PATCH"):
        kwargs: dict[str, Any] = {"json": {"progress": 1}} if method == "PATCH" else {}
        response = client.request(method, f"/encoding/jobs/{new_uuid()}", **kwargs)
        assert_error(response, 404, "NOT_FOUND")


def test_malformed_id_in_path_is_422_naming_it(client: TestClient) -> None:
    assert_error(client.get("/encoding/jobs/b9fe1066"), 422, "BAD_USER_INPUT", "id")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (request_object(inputs=[]), "inputs"),
        (request_object(inputs=[new_uuid() for _ in range(101)]), "inputs"),
        (request_object(inputs=[INPUT, INPUT]), "inputs[1]"),
        (request_object(inputs=[INPUT, "x"]), "inputs[1]"),
        (request_object(inputs=INPUT), "inputs"),
        (request_object(profile="nope"), "profile"),
        (request_object(video=7), "video"),
        ({"inputs": [INPUT], "profile": PROFILE}, "video"),
        (request_object(extra=1), "extra"),
        ([request_object()], "body"),
    ],
    ids=[
        "empty-inputs", "too-many", "duplicate", "malformed-input", "inputs-not-list",
        "bad-profile", "video-not-string", "missing-video", "unknown-key", "not-an-object",
    ],
)  # fmt: skip
def test_create_refuses_invalid_values(client: TestClient, body: Any, field: str) -> None:
    assert_error(client.post("/encoding/jobs", json=body), 422, "BAD_USER_INPUT", field)
    assert client.get("/encoding/jobs").json()["jobs"] == []


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"inputs=1"])
def test_body_that_is_not_json_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post(
        "/encoding/jobs", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "BAD_USER_INPUT", "body")


JOB_JSON = json.dumps(request_object())


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", JOB_JSON.encode()),
        ("text/plain;charset=UTF-8", JOB_JSON.encode()),
        ("application/x-www-form-urlencoded", JOB_JSON.encode()),
        ("multipart/form-data; boundary=x", JOB_JSON.encode()),
        ("application/json; charset=utf-16", JOB_JSON.encode("utf-16")),
        ("application/jsonp", JOB_JSON.encode()),
        (None, JOB_JSON.encode()),
    ],
)
def test_a_body_not_declared_json_is_415(
    client: TestClient, content_type: str | None, raw: bytes
) -> None:
    job = create(client)
    headers = {} if content_type is None else {"content-type": content_type}
    for method, url in (("POST", "/encoding/jobs"), ("PATCH", f"/encoding/jobs/{job['id']}")):
        response = client.request(method, url, content=raw, headers=headers)
        assert_error(response, 415, "BAD_REQUEST", "Content-Type:")
    # Nothing was created or changed.
    assert client.get("/encoding/jobs").json()["jobs"] == [job]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=UTF-8", 'application/json;charset="utf-8"',
     "application/vnd.api+json"],
)  # fmt: skip
def test_json_media_types_are_read(client: TestClient, content_type: str) -> None:
    created = client.post(
        "/encoding/jobs", content=JOB_JSON.encode(), headers={"content-type": content_type}
    )
    assert created.status_code == 201, created.text
    patched = client.patch(
        f"/encoding/jobs/{created.json()['id']}",
        content=b'{"progress": 5}',
        headers={"content-type": content_type},
    )
    assert patched.json()["progress"] == 5


def test_json_in_another_encoding_is_not_guessed(client: TestClient) -> None:
    for encoding in ("utf-16", "utf-32", "utf-16-le"):
        response = client.post(
            "/encoding/jobs",
            content=JOB_JSON.encode(encoding),
            headers={"content-type": "application/json"},
        )
        assert_error(response, 400, "BAD_USER_INPUT", "not valid JSON")
    assert client.get("/encoding/jobs").json()["jobs"] == []


def test_a_page_on_another_local_origin_cannot_create_a_job_in_open_mode(
    tmp_path: Path,
) -> None:
    # A form or fetch() with text/plain is a "simple" request: no CORS preflight
    # stops the browser from sending it, and loopback origins pass in open mode.
    settings = Settings(database_url=f"sqlite:///{tmp_path}/jobs.db")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        response = local.post(
            "/encoding/jobs",
            content=JOB_JSON.encode(),
            headers={"Origin": "http://localhost:5173", "Content-Type": "text/plain"},
        )
        assert_error(response, 415, "BAD_REQUEST", "application/json")
        assert local.get("/encoding/jobs").json()["jobs"] == []


def test_patch_applies_the_state_rules(client: TestClient) -> None:
    job = create(client)
    url = f"/encoding/jobs/{job['id']}"
    assert client.patch(url, json={"progress": 40}).json()["progress"] == 40
    assert_error(client.patch(url, json={"progress": 39}), 409, "CONFLICT", "progress")
    assert_error(client.patch(url, json={"progress": 101}), 422, "BAD_USER_INPUT", "progress")
    failed = client.patch(url, json={"status": 10})
    assert failed.status_code == 200
    assert list(failed.json()) == RESPONSE_KEYS
    assert (failed.json()["status"], failed.json()["progress"]) == (10, 40)
    assert_error(client.patch(url, json={"progress": 50}), 409, "CONFLICT")
    assert client.get(url).json() == failed.json()


def test_patch_status_completed_sets_one_hundred(client: TestClient) -> None:
    job = create(client)
    done = client.patch(f"/encoding/jobs/{job['id']}", json={"progress": 20, "status": 1})
    assert (done.json()["status"], done.json()["progress"]) == (1, 100)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": 5}, "status"),
        ({"status": "1"}, "status"),
        ({"status": True}, "status"),
        ({"progress": "40"}, "progress"),
        ({"progress": 4.5}, "progress"),
        ({"progress": None}, "progress"),
        ({}, "body"),
        ({"progress": 10, "colour": "red"}, "colour"),
    ],
)
def test_patch_refuses_invalid_values(client: TestClient, body: Any, field: str) -> None:
    job = create(client)
    url = f"/encoding/jobs/{job['id']}"
    assert_error(client.patch(url, json=body), 422, "BAD_USER_INPUT", field)
    assert client.get(url).json() == job


def test_delete_sets_deleted_at_and_is_idempotent(client: TestClient) -> None:
    job = create(client)
    url = f"/encoding/jobs/{job['id']}"
    deleted = client.delete(url)
    assert deleted.status_code == 200
    assert list(deleted.json()) == RESPONSE_KEYS
    assert TIMESTAMP.match(deleted.json()["deleted_at"])
    assert client.delete(url).json() == deleted.json()
    assert client.get(url).json() == deleted.json()
    assert_error(client.patch(url, json={"progress": 5}), 409, "CONFLICT")


def test_list_pages_newest_first(client: TestClient) -> None:
    ids = [create(client)["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/encoding/jobs", params=params).json()
        assert list(page) == ["jobs", "next_cursor"]
        assert all(list(job) == RESPONSE_KEYS for job in page["jobs"])
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_filters_by_status_and_hides_deleted(client: TestClient) -> None:
    running = create(client)
    done = create(client)
    client.patch(f"/encoding/jobs/{done['id']}", json={"status": 1})
    gone = create(client)
    client.delete(f"/encoding/jobs/{gone['id']}")

    def ids(**params: Any) -> list[str]:
        return [job["id"] for job in client.get("/encoding/jobs", params=params).json()["jobs"]]

    assert ids() == [done["id"], running["id"]]
    assert ids(status=1) == [done["id"]]
    assert ids(status=0) == [running["id"]]
    assert ids(status=10) == []
    assert ids(include_deleted="true") == [gone["id"], done["id"], running["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": 2}, "status"),
        ({"status": "done"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"include_deleted": "maybe"}, "include_deleted"),
        ({"video": "x"}, "video"),
    ],
)
def test_list_refuses_invalid_parameters(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    assert_error(client.get("/encoding/jobs", params=params), 422, "BAD_USER_INPUT", field)


def test_unknown_route_and_method_answer_json(client: TestClient) -> None:
    assert_error(client.get("/encoding/nothing"), 404, "NOT_FOUND")
    assert client.put("/encoding/jobs").status_code == 405
    assert client.put("/encoding/jobs").json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


def test_deeply_nested_json_body_is_400_not_500(client: TestClient) -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    response = client.post(
        "/encoding/jobs", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "BAD_USER_INPUT", "body")
