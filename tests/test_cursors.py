"""Page cursors tell a tenant nothing about other tenants, open only for the tenant
they were given to, and still page through every job exactly once.

Job positions (`seq`) are one sequence across tenants: a readable cursor let tenant
B count the jobs tenant A created between two of its own.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient

from app.jobs.cursors import CursorCodec
from app.settings import Settings, SettingsError
from tests.tokens import OTHER_SECRET, SECRET, auth_settings, bearer, create_job, gateway, token

PAGE = """query($first: Int, $after: String) {
    jobs(first: $first, after: $after) {
        edges { cursor node { id } } pageInfo { endCursor hasNextPage }
    }
}"""
# A random string of the kind the settings accept; not the tokens' secret.
CURSOR_SECRET = "Jq4Wm7Xr2Tz9Lb5Nc8Vd3Hf6Kg1Ps0YaEoUiRtB"


def fresh(folder: Path) -> Settings:
    """Settings on a database of its own in `folder`, with the tests' token secret."""
    folder.mkdir()
    return auth_settings(folder)


def gql(client: TestClient, tenant: str, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(token(tenant))
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def rest_page(client: TestClient, tenant: str, **params: Any) -> Any:
    return client.get("/encoding/jobs", params=params, headers=bearer(token(tenant)))


def cursors_of(client: TestClient, tenant: str) -> dict[str, str]:
    """Job id -> its cursor, for every job of `tenant`."""
    page = gql(client, tenant, PAGE, first=100)["data"]["jobs"]
    return {edge["node"]["id"]: edge["cursor"] for edge in page["edges"]}


def readings(cursor: str) -> bytes:
    """What base64 of any flavour makes of a cursor (b'' if nothing)."""
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        for padded in (cursor, cursor + "=" * (-len(cursor) % 4)):
            try:
                return decode(padded)
            except (binascii.Error, ValueError):
                continue
    return b""


def integers_in(data: bytes) -> set[int]:
    """Every 2-, 4- or 8-byte integer (either byte order) anywhere in `data`."""
    found = set()
    for size in (2, 4, 8):
        for start in range(len(data) - size + 1):
            chunk = data[start : start + size]
            found |= {int.from_bytes(chunk, "big"), int.from_bytes(chunk, "little")}
    return found


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with gateway(auth_settings(tmp_path)) as test_client:
        yield test_client


def test_a_tenant_cannot_count_another_tenants_jobs_from_its_cursors(tmp_path: Path) -> None:
    # Between acme's two jobs, umbrella creates 0 jobs in one gateway and 5 in another.
    seen: list[tuple[str, str]] = []
    for between in (0, 5):
        with gateway(fresh(tmp_path / str(between))) as client:
            first = create_job(client, tenant="acme")["id"]
            for _ in range(between):
                create_job(client, tenant="umbrella")
            second = create_job(client, tenant="acme")["id"]
            cursors = cursors_of(client, "acme")
            seen.append((cursors[first], cursors[second]))
            rest = rest_page(client, "acme", limit=1).json()["next_cursor"]
            assert rest == cursors[second]

    # Positions 1 and 2, then 1 and 7: nothing in the cursors says so.
    for pair in seen:
        for cursor in pair:
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", cursor), "short and URL-safe"
            data = readings(cursor)
            # Not text ("job:2" was), nor a plain integer at any offset.
            assert not data.isascii(), f"{cursor} reads as {data!r}"
            assert not {1, 2, 7} & integers_in(data), f"{cursor} holds a position"
    # The first job has the same position in both: same cursor (deterministic), but
    # the second's cursors share nothing a client could subtract.
    assert seen[0][0] == seen[1][0]
    assert seen[0][1] != seen[1][1]


def test_the_same_position_in_two_tenants_has_different_cursors(tmp_path: Path) -> None:
    cursors = {}
    for tenant in ("acme", "umbrella"):
        with gateway(fresh(tmp_path / tenant)) as client:
            create_job(client, tenant=tenant)  # the first job: position 1 in both
            (cursors[tenant],) = cursors_of(client, tenant).values()
    assert cursors["acme"] != cursors["umbrella"]


def refused_on_graphql(client: TestClient, tenant: str, cursor: str) -> str:
    body = gql(client, tenant, PAGE, after=cursor)
    assert body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    message: str = error["message"]
    assert message.startswith("after: "), message
    return message


def refused_on_rest(client: TestClient, tenant: str, cursor: str) -> str:
    response = rest_page(client, tenant, cursor=cursor)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    message: str = error["message"]
    assert message.startswith("cursor: "), message
    return message


def test_another_tenants_cursor_is_bad_input_not_a_page(client: TestClient) -> None:
    for _ in range(3):
        create_job(client, tenant="acme")
        create_job(client, tenant="umbrella")
    acme = rest_page(client, "acme", limit=1).json()["next_cursor"]
    umbrella = rest_page(client, "umbrella", limit=1).json()["next_cursor"]

    for tenant, cursor in (("umbrella", acme), ("acme", umbrella)):
        assert "not a cursor of this list" in refused_on_rest(client, tenant, cursor)
        assert "not a cursor of this list" in refused_on_graphql(client, tenant, cursor)
    # Each still works for its own tenant.
    assert len(rest_page(client, "acme", cursor=acme).json()["jobs"]) == 2
    assert len(gql(client, "umbrella", PAGE, after=umbrella)["data"]["jobs"]["edges"]) == 2


def edited(cursor: str) -> list[str]:
    flipped = "A" if cursor[5] != "A" else "B"
    return [
        cursor + "A",  # trailing junk, in the alphabet
        cursor + "=",  # padding
        cursor + "==",
        cursor + "!",  # junk base64 decoders skip
        cursor + "\n",
        " " + cursor,
        cursor[:-1],  # truncated
        cursor[:5] + flipped + cursor[6:],  # one character changed
        cursor[::-1],
        cursor.upper(),
        "",
        "a" * 5000,
        # The format before sealed cursors: readable, and now refused.
        base64.urlsafe_b64encode(b"job:1").decode(),
        base64.urlsafe_b64encode(b"job:1").decode() + "!!",
    ]


def test_edited_or_junk_cursors_are_bad_input_on_graphql_and_rest(client: TestClient) -> None:
    for _ in range(3):
        create_job(client, tenant="acme")
    cursor = rest_page(client, "acme", limit=1).json()["next_cursor"]
    for bad in edited(cursor):
        refused_on_graphql(client, "acme", bad)
        if bad:  # REST: an empty `cursor=` means the first page
            refused_on_rest(client, "acme", bad)


def test_pages_never_repeat_or_skip_across_tenants_and_surfaces(client: TestClient) -> None:
    mine: list[str] = []
    for index in range(7):
        mine.append(create_job(client, tenant="acme")["id"])
        for _ in range(index % 3):
            create_job(client, tenant="umbrella")
    client.delete(f"/encoding/jobs/{mine[3]}", headers=bearer(token("acme")))
    expected = [job for job in reversed(mine) if job != mine[3]]

    # GraphQL: `after: endCursor`, two at a time.
    seen: list[str] = []
    after = None
    while True:
        page = gql(client, "acme", PAGE, first=2, after=after)["data"]["jobs"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected

    # REST, three at a time, switching to GraphQL halfway: one cursor codec for both.
    first = rest_page(client, "acme", limit=3).json()
    rest_ids = [job["id"] for job in first["jobs"]]
    page = gql(client, "acme", PAGE, first=2, after=first["next_cursor"])["data"]["jobs"]
    rest_ids += [edge["node"]["id"] for edge in page["edges"]]
    last = rest_page(client, "acme", limit=10, cursor=page["pageInfo"]["endCursor"]).json()
    rest_ids += [job["id"] for job in last["jobs"]]
    assert last["next_cursor"] is None
    assert rest_ids == expected


def test_cursors_survive_a_restart_and_not_a_new_secret(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path)
    with gateway(settings) as client:
        for _ in range(3):
            create_job(client, tenant="acme")
        cursor = rest_page(client, "acme", limit=1).json()["next_cursor"]

    # Another process with the same settings (or this one restarted) reads it.
    with gateway(settings) as client:
        assert len(rest_page(client, "acme", cursor=cursor).json()["jobs"]) == 2

    # CURSOR_SECRET, when set, is the key: rotating it ends old cursors ...
    with gateway(auth_settings(tmp_path, cursor_secret=CURSOR_SECRET)) as client:
        refused_on_rest(client, "acme", cursor)
        kept = rest_page(client, "acme", limit=1).json()["next_cursor"]
    # ... and it keeps cursors working while AUTH_JWT_SECRET changes.
    rotated = Settings(
        database_url=settings.database_url,
        auth_jwt_secret=OTHER_SECRET,
        cursor_secret=CURSOR_SECRET,
    )
    with gateway(rotated) as client:
        page = client.get(
            "/encoding/jobs",
            params={"cursor": kept},
            headers=bearer(token("acme", secret=OTHER_SECRET)),
        )
        assert len(page.json()["jobs"]) == 2


def test_the_largest_position_is_still_a_cursor() -> None:
    codec = CursorCodec.from_settings(Settings(cursor_secret=CURSOR_SECRET))
    for seq in (0, 1, 2**63 - 1):
        assert codec.decode("acme", codec.encode("acme", seq), "after") == seq


def public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


@pytest.mark.parametrize("secret", ["short", "changeme-changeme-changeme-changeme", "a" * 40])
def test_a_weak_cursor_secret_is_refused(secret: str) -> None:
    with pytest.raises(SettingsError, match="CURSOR_SECRET must be a random string"):
        Settings.from_env({"AUTH_JWT_SECRET": SECRET, "CURSOR_SECRET": secret})


def test_a_public_key_alone_needs_a_cursor_secret() -> None:
    # Nothing secret to derive the cursor key from; the public key is public.
    pem = public_pem()
    with pytest.raises(SettingsError, match="CURSOR_SECRET must be set"):
        Settings.from_env({"AUTH_JWT_PUBLIC_KEY": pem})
    with pytest.raises(SettingsError, match="CURSOR_SECRET must be set"):
        CursorCodec.from_settings(Settings(auth_jwt_public_key=pem))
    settings = Settings.from_env({"AUTH_JWT_PUBLIC_KEY": pem, "CURSOR_SECRET": CURSOR_SECRET})
    assert CursorCodec.from_settings(settings).encode("acme", 1)
