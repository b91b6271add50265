"""Idempotent create: what a retry with the same key gets, what a key may be, and how
keys expire. The real app (TestClient) on SQLite and PostgreSQL; concurrency is in
test_idempotent_create_concurrency.py."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from databases import Database
from starlette.testclient import TestClient

from app import db
from app.errors import IdempotencyKeyReused
from app.jobs import idempotency, keys, store
from app.jobs.model import JobFilter, new_job, utcnow
from app.jobs.sweeper import KeySweeper
from tests.conftest import GraphQL
from tests.jobs_data import JOB_FIELDS, new_uuid, request_object
from tests.tokens import auth_settings, bearer, gateway, token

CREATE_ONCE = (
    "mutation($input: CreateJobInput!, $key: String) {"
    f" createJob(input: $input, idempotencyKey: $key) {{ {JOB_FIELDS} }} }}"
)
COUNT = "query($video: UUID!) { jobs(filter: {video: $video}) { totalCount } }"
DAY = timedelta(hours=24)


def post(client: TestClient, body: Any, key: str | None, **headers: str) -> Any:
    if key is not None:
        headers["Idempotency-Key"] = key
    if isinstance(body, str):
        headers["Content-Type"] = "application/json"
        return client.post("/encoding/jobs", content=body, headers=headers)
    return client.post("/encoding/jobs", json=body, headers=headers)


def stored(gql: GraphQL, video: str) -> int:
    count: int = gql(COUNT, video=video)["data"]["jobs"]["totalCount"]
    return count


def test_a_retry_gets_the_first_answer_again_even_after_the_job_moved_on(
    client: TestClient, gql: GraphQL
) -> None:
    body, key = request_object(video=new_uuid()), new_uuid()
    first = post(client, body, key)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    moved = client.patch(f"/encoding/jobs/{first.json()['id']}", json={"progress": 40})
    assert moved.status_code == 200

    again = post(client, body, key)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    # Where the job is now is the job's own address's to say.
    assert client.get(again.headers["location"]).json()["progress"] == 40

    # The key is the tenant's, whichever API it came through.
    replayed = gql(CREATE_ONCE, input=body, key=key)["data"]["createJob"]
    assert (replayed["id"], replayed["progress"], replayed["updatedAt"]) == (
        first.json()["id"],
        0,
        replayed["createdAt"],
    )
    assert stored(gql, body["video"]) == 1


def test_the_same_request_written_another_way_is_the_same_request(
    client: TestClient, gql: GraphQL
) -> None:
    body, key = request_object(video=new_uuid(), inputs=[new_uuid(), new_uuid()]), new_uuid()
    first = post(client, body, key).json()
    reordered = {
        "video": body["video"].upper(),
        "inputs": body["inputs"],
        "profile": body["profile"],
    }
    again = post(client, json.dumps(reordered, indent=4), key)
    assert again.status_code == 201
    assert again.json() == first
    assert stored(gql, body["video"]) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda body: {**body, "inputs": body["inputs"][::-1]}, id="inputs reordered"),
        pytest.param(lambda body: {**body, "profile": new_uuid()}, id="another profile"),
    ],
)
def test_another_request_with_the_key_is_a_conflict_naming_it_and_stores_nothing(
    client: TestClient, gql: GraphQL, change: Any
) -> None:
    body, key = request_object(video=new_uuid(), inputs=[new_uuid(), new_uuid()]), new_uuid()
    first = post(client, body, key).json()

    refused = post(client, change(body), key)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "CONFLICT"
    assert repr(key) in error["message"] and first["id"] in error["message"]

    answer = gql(CREATE_ONCE, input=change(body), key=key)
    assert answer["data"] is None
    assert answer["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert stored(gql, body["video"]) == 1


def test_a_refused_create_leaves_its_key_unused(client: TestClient) -> None:
    key = new_uuid()
    refused = post(client, request_object(profile="not a uuid"), key)
    assert refused.status_code == 422
    created = post(client, request_object(), key)
    assert created.status_code == 201
    assert "idempotent-replayed" not in created.headers


# (header values sent, what the message says after "Idempotency-Key header: ")
BAD_HEADERS = [
    ([""], "must be 1 to 255 characters, got 0"),
    (["k" * 256], "must be 1 to 255 characters, got 256"),
    (["a", "b"], "give it once"),
    (['"a"b"'], 'a quoted key must escape " as \\"'),
    (['"a\\nb"'], 'a quoted key escapes only \\" and \\\\'),
]
# (argument, how the message after "idempotencyKey: " ends)
BAD_ARGUMENTS = [
    ("", "must be 1 to 255 characters, got 0"),
    ("k" * 256, "must be 1 to 255 characters, got 256"),
    ("tab\there", "holds a character that is not printable ASCII"),
    ("clé", "holds a character that is not printable ASCII"),
    (" padded", "starts or ends with a space"),
]


@pytest.mark.engines("sqlite")
def test_a_bad_idempotency_key_is_bad_user_input_naming_the_header_or_argument(
    client: TestClient, gql: GraphQL
) -> None:
    # One app for every case (each would otherwise start its own).
    for values, problem in BAD_HEADERS:
        response = client.post(
            "/encoding/jobs",
            content=json.dumps(request_object()),
            headers=[("Content-Type", "application/json")]
            + [("Idempotency-Key", value) for value in values],
        )
        assert response.status_code == 422, (values, response.text)
        assert response.json()["error"] == {
            "code": "BAD_USER_INPUT",
            "message": f"Idempotency-Key header: {problem}",
        }, values
    for key, problem in BAD_ARGUMENTS:
        [error] = gql(CREATE_ONCE, input=request_object(), key=key)["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", key
        assert error["message"].startswith("idempotencyKey: "), error
        assert error["message"].endswith(problem), error
    # Nothing was created by any of them.
    assert client.get("/encoding/jobs").json()["jobs"] == []


@pytest.mark.engines("sqlite")
def test_a_quoted_header_key_is_the_same_key_bare_and_any_printable_key_is_taken(
    client: TestClient,
) -> None:
    key = 'any "printable" key, \\ included ~' + "k" * 222
    assert len(key) == 255
    first = post(client, request_object(), key)
    quoted = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    again = post(client, request_object(), quoted)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"


def test_keys_are_each_tenants_own_and_need_the_write_scope(database_url: str) -> None:
    with gateway(auth_settings(database_url)) as client:
        key, body = new_uuid(), request_object()
        ours = post(client, body, key, **bearer(token("acme")))
        theirs = post(client, {**body, "profile": new_uuid()}, key, **bearer(token("globex")))
        assert (ours.status_code, theirs.status_code) == (201, 201)
        assert ours.json()["id"] != theirs.json()["id"]
        assert "idempotent-replayed" not in theirs.headers
        # A token that may only read learns nothing about the key.
        reader = post(client, body, key, **bearer(token("acme", "jobs:read")))
        assert (reader.status_code, reader.json()["error"]["code"]) == (403, "FORBIDDEN")


async def _age_keys(database: Database, by: timedelta) -> None:
    """Every key first used `by` ago (they were all used within the test)."""
    await database.execute(db.idempotency_keys.update().values(created_at=utcnow() - by))


@pytest.mark.anyio
async def test_an_expired_key_is_a_new_key(database: Database) -> None:
    request = new_job([uuid.uuid4()], uuid.uuid4(), uuid.uuid4())
    other = new_job([uuid.uuid4()], uuid.uuid4(), uuid.uuid4())
    key = idempotency.for_request("order-17", request)
    first = await keys.create_job_once(database, "t", request, key, DAY)
    assert not first.replayed
    with pytest.raises(IdempotencyKeyReused):
        await keys.create_job_once(
            database, "t", other, idempotency.for_request("order-17", other), DAY
        )

    await _age_keys(database, DAY + timedelta(seconds=1))
    # Expired, even before the sweeper has been: another request may take the key...
    taken = await keys.create_job_once(
        database, "t", other, idempotency.for_request("order-17", other), DAY
    )
    assert not taken.replayed and taken.job.id != first.job.id
    # ...and holds it from then on.
    again = await keys.create_job_once(
        database, "t", other, idempotency.for_request("order-17", other), DAY
    )
    assert again.replayed and again.job == taken.job
    assert await store.get_job(database, "t", first.job.id) == first.job


@pytest.mark.anyio
async def test_the_sweeper_deletes_expired_keys_in_batches_and_keeps_the_rest(
    database: Database,
) -> None:
    def request() -> Any:
        return new_job([uuid.uuid4()], uuid.uuid4(), uuid.uuid4())

    old = [request() for _ in range(5)]
    for index, job in enumerate(old):
        await keys.create_job_once(
            database, "t", job, idempotency.for_request(f"old-{index}", job), DAY
        )
    await _age_keys(database, DAY + timedelta(seconds=1))
    fresh = request()
    kept = await keys.create_job_once(
        database, "t", fresh, idempotency.for_request("fresh", fresh), DAY
    )

    assert await KeySweeper(database, int(DAY.total_seconds()), batch=2).sweep() == 5
    left = await database.fetch_all(sa.select(db.idempotency_keys.c.key))
    assert [row._mapping["key"] for row in left] == ["fresh"]
    replay = await keys.create_job_once(
        database, "t", fresh, idempotency.for_request("fresh", fresh), DAY
    )
    assert replay.replayed and replay.job == kept.job
    # Only keys go: the jobs they created stay.
    assert len((await store.list_jobs(database, "t", JobFilter(), 10)).jobs) == 6


@pytest.mark.engines("sqlite")
def test_a_browser_page_allowed_by_cors_may_send_a_key_and_read_the_replay_mark(
    database_url: str,
) -> None:
    origin = "https://app.example.test"
    settings = auth_settings(database_url, cors_origins=(origin,))
    with gateway(settings) as client:
        preflight = client.options(
            "/encoding/jobs",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
        key, headers = new_uuid(), {"Origin": origin, **bearer(token())}
        post(client, request_object(), key, **headers)
        replay = post(client, request_object(), key, **headers)
        exposed = replay.headers["access-control-expose-headers"].lower()
        assert "idempotent-replayed" in exposed
