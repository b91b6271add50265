"""Persisted operations (app/graphql/persisted.py): Apollo's automatic persisted
queries driven by the real `@apollo/client` link, and trusted documents from a
manifest that GraphQL Code Generator's client preset writes, over HTTP and both
WebSocket protocols.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings, SettingsError
from support.servers import ROOT, Server, start_server
from tests.tokens import JOB_INPUT, SECRET, token

APOLLO_SCRIPT = ROOT / "tests" / "apollo_persisted.mjs"
JOB = "query Job($id: UUID!) { job(id: $id) { id status } }"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(sha: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha}}


def codes(answer: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors", [])]


def node_or_skip(package: str) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: this test drives the gateway with npm packages")
    if not (ROOT / "node_modules" / package).is_dir():
        pytest.skip(f"node_modules/{package} is missing: run `npm ci` at the top")
    return node


# --- automatic persisted queries ------------------------------------------------------


@pytest.fixture
def two_gateways(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two processes on one SQLite file: what one learns, the other does not know."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    first = start_server({"DATABASE_URL": url}, tmp_path / "a.log")
    try:
        second = start_server({"DATABASE_URL": url}, tmp_path / "b.log")
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


def test_apollo_clients_persisted_query_link(two_gateways: tuple[Server, Server]) -> None:
    node = node_or_skip("@apollo/client")
    first, second = two_gateways
    done = subprocess.run(
        [node, str(APOLLO_SCRIPT), first.url, second.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps = {step["name"]: step for step in json.loads(done.stdout)["steps"]}
    for step in steps.values():
        assert step["error"] is None, step  # no error ever reaches the client

    def sent(name: str) -> list[tuple[str, bool, int, list[str]]]:
        return [(r["method"], r["query"], r["status"], r["codes"]) for r in steps[name]["requests"]]

    not_found = ["PERSISTED_QUERY_NOT_FOUND"]
    # A first call sends the hash alone, hears "not found", and registers the document.
    assert sent("create") == [("POST", False, 200, not_found), ("POST", True, 200, [])]
    assert sent("first query") == [("POST", False, 200, not_found), ("POST", True, 200, [])]
    # Later calls send only the hash.
    assert sent("second query") == [("POST", False, 200, [])]
    job = steps["create"]["data"]["createJob"]
    assert steps["second query"]["data"]["job"]["id"] == job["id"]
    # A GET with the hash only is answered (a CDN can cache the URL).
    assert sent("GET query") == [("GET", False, 200, [])]
    assert steps["GET query"]["data"]["job"]["id"] == job["id"]
    # Another process learns the document from the link's retry; the client sees no error.
    assert sent("other process") == [("GET", False, 200, not_found), ("POST", True, 200, [])]
    assert sent("other process again") == [("GET", False, 200, [])]
    assert steps["other process again"]["data"]["job"]["id"] == job["id"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db"))) as client:
        yield client


def test_a_hash_that_does_not_match_the_document_is_refused(client: TestClient) -> None:
    body = {"query": JOB, "variables": {"id": UNKNOWN_ID}, "extensions": apq("0" * 64)}
    response = client.post("/graphql", json=body)
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_USER_INPUT"]
    assert "sha256Hash" in response.json()["errors"][0]["message"]
    # Nothing was kept under the wrong hash.
    response = client.post("/graphql", json={"extensions": apq("0" * 64)})
    assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


def test_a_persisted_mutation_is_never_run_by_get(client: TestClient) -> None:
    mutation = f'mutation {{ deleteJob(id: "{UNKNOWN_ID}") {{ id }} }}'
    registered = client.post(
        "/graphql", json={"query": mutation, "extensions": apq(sha256(mutation))}
    )
    assert codes(registered.json()) == ["NOT_FOUND"]  # ran (the job is unknown), and kept
    extensions = json.dumps(apq(sha256(mutation)))
    response = client.get("/graphql", params={"extensions": extensions})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_a_malformed_persisted_query_names_the_field(client: TestClient) -> None:
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}
    response = client.post("/graphql", json=body)
    assert response.status_code == 400
    assert "extensions.persistedQuery.sha256Hash" in response.json()["errors"][0]["message"]


def test_the_store_is_bounded(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", persisted_queries_kept=2)
    with TestClient(create_app(settings)) as client:
        documents = [f"query Q{n} {{ __typename }}" for n in range(3)]
        for document in documents:
            client.post("/graphql", json={"query": document, "extensions": apq(sha256(document))})
        answers = [
            client.post("/graphql", json={"extensions": apq(sha256(document))}).json()
            for document in documents
        ]
    assert codes(answers[0]) == ["PERSISTED_QUERY_NOT_FOUND"]  # the least recently used went
    assert [answer["data"] for answer in answers[1:]] == [{"__typename": "Query"}] * 2


# --- trusted documents ----------------------------------------------------------------

OPERATIONS = """
query Job($id: UUID!) { job(id: $id) { id status } }
subscription Progress($id: UUID!) { jobProgress(id: $id) { id progress } }
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """persisted-documents.json as graphql-codegen's client preset writes it."""
    node_or_skip("@graphql-codegen/cli")
    folder = tmp_path_factory.mktemp("codegen")
    (folder / "operations.graphql").write_text(OPERATIONS)
    config = {
        "schema": str(ROOT / "schema.graphql"),
        "documents": [str(folder / "operations.graphql")],
        "generates": {
            str(folder / "gql") + "/": {
                "preset": "client",
                "presetConfig": {"persistedDocuments": {"hashAlgorithm": "sha256"}},
            }
        },
    }
    (folder / "codegen.json").write_text(json.dumps(config))
    done = subprocess.run(
        [
            str(ROOT / "node_modules" / ".bin" / "graphql-codegen"),
            "--config",
            str(folder / "codegen.json"),
        ],
        cwd=ROOT,  # where its presets are installed
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    path = folder / "gql" / "persisted-documents.json"
    documents: dict[str, str] = json.loads(path.read_text())
    documents["__path__"] = str(path)
    return documents


def trusted(manifest: dict[str, str], tmp_path: Path, **options: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path}/jobs.db",
        trusted_documents=manifest["__path__"],
        auth_jwt_secret=SECRET,
        **options,
    )


def listed(manifest: dict[str, str], operation: str) -> tuple[str, str]:
    return next((h, d) for h, d in manifest.items() if f"{operation}(" in d and h != "__path__")


def test_trusted_documents_over_http(manifest: dict[str, str], tmp_path: Path) -> None:
    key, document = listed(manifest, "query Job")
    # The client preset writes "sha256:<the document's SHA-256>", the draft's form.
    assert key == f"sha256:{sha256(document)}"
    sha = sha256(document)
    reader = {"authorization": f"Bearer {token(scope='jobs:read')}"}
    variables = {"id": UNKNOWN_ID}
    with TestClient(create_app(trusted(manifest, tmp_path))) as client:
        # Listed: by hash (POST and GET), by documentId, or the listed text itself.
        by_hash = client.post(
            "/graphql", json={"variables": variables, "extensions": apq(sha)}, headers=reader
        )
        assert by_hash.json() == {"data": {"job": None}}
        by_get = client.get(
            "/graphql",
            params={"variables": json.dumps(variables), "extensions": json.dumps(apq(sha))},
            headers=reader,
        )
        assert by_get.json() == {"data": {"job": None}}
        by_id = client.post(
            "/graphql",
            json={"documentId": key, "variables": variables},
            headers=reader,
        )
        assert by_id.json() == {"data": {"job": None}}
        as_text = client.post(
            "/graphql", json={"query": document, "variables": variables}, headers=reader
        )
        assert as_text.json() == {"data": {"job": None}}
        # Unlisted: refused, sent as text or registered by hash.
        unlisted = "{ jobs(first: 1) { totalCount } }"
        for body in (
            {"query": unlisted},
            {"query": unlisted, "extensions": apq(sha256(unlisted))},
        ):
            response = client.post("/graphql", json=body, headers=reader)
            assert response.status_code == 403
            assert codes(response.json()) == ["OPERATION_NOT_TRUSTED"]
        unknown = client.post("/graphql", json={"extensions": apq("1" * 64)}, headers=reader)
        assert codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        # A token with graphql:adhoc may send any document (GraphiQL for developers).
        developer = {"authorization": f"Bearer {token(scope='jobs:read graphql:adhoc')}"}
        response = client.post("/graphql", json={"query": unlisted}, headers=developer)
        assert response.json() == {"data": {"jobs": {"totalCount": 0}}}


def test_trusted_documents_adhoc_refuse_refuses_every_caller(
    manifest: dict[str, str], tmp_path: Path
) -> None:
    settings = trusted(manifest, tmp_path, trusted_documents_adhoc="refuse")
    developer = {"authorization": f"Bearer {token(scope='jobs:read graphql:adhoc')}"}
    with TestClient(create_app(settings)) as client:
        response = client.post("/graphql", json={"query": "{ __typename }"}, headers=developer)
    assert codes(response.json()) == ["OPERATION_NOT_TRUSTED"]


def test_a_manifest_that_is_not_one_is_a_settings_error(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.json"
    bad.write_text('["not", "a", "manifest"]')
    with pytest.raises(SettingsError, match="TRUSTED_DOCUMENTS"):
        Settings.from_env({"TRUSTED_DOCUMENTS": str(bad)})
    with pytest.raises(SettingsError, match="TRUSTED_DOCUMENTS_ADHOC"):
        Settings.from_env({"TRUSTED_DOCUMENTS_ADHOC": "maybe"})


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_trusted_documents_over_websocket(
    manifest: dict[str, str], tmp_path: Path, protocol: str
) -> None:
    sha = listed(manifest, "subscription Progress")[0].removeprefix("sha256:")
    reader = token(scope="jobs:read jobs:write")
    transport = protocol == "graphql-transport-ws"
    start, data = ("subscribe", "next") if transport else ("start", "data")
    with TestClient(create_app(trusted(manifest, tmp_path))) as client:
        created = client.post(
            "/encoding/jobs",
            json=JOB_INPUT,
            headers={"authorization": f"Bearer {reader}"},
        ).json()
        with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
            ws.send_json(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {reader}"}}
            )
            assert ws.receive_json()["type"] == "connection_ack"
            # An unlisted document: the operation's error, the connection stays.
            unlisted = "subscription { jobUpdates { id } }"
            ws.send_json({"id": "1", "type": start, "payload": {"query": unlisted}})
            refused = _next_of(ws, "1")
            assert refused["type"] == "error"
            payload = refused["payload"]
            error = payload[0] if isinstance(payload, list) else payload
            assert error["extensions"]["code"] == "OPERATION_NOT_TRUSTED"
            # The listed one, by hash alone: the job's current state.
            payload = {"variables": {"id": created["id"]}, "extensions": apq(sha)}
            ws.send_json({"id": "2", "type": start, "payload": payload})
            answer = _next_of(ws, "2")
            assert answer["type"] == data
            assert answer["payload"]["data"]["jobProgress"]["id"] == created["id"]


def _next_of(ws: Any, op_id: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = ws.receive_json()
        if message.get("id") == op_id:
            return message


# --- prepared operations and cursors sealed only when read -----------------------------

SAME_ANSWERS: list[tuple[str, dict[str, Any]]] = [
    ("POST", {"query": JOB, "variables": {"id": UNKNOWN_ID}}),
    ("POST", {"query": JOB, "variables": {"id": "not-a-uuid"}}),
    ("POST", {"query": JOB}),
    ("POST", {"query": "query A { __typename } query B { __typename }"}),
    ("POST", {"query": "query A { __typename } query B { __typename }", "operationName": "C"}),
    ("POST", {"query": "{ jobs(first: 0) { totalCount } }"}),
    ("POST", {"query": '{ jobs(after: "nope") { totalCount } }'}),
    ("POST", {"query": f'mutation {{ deleteJob(id: "{UNKNOWN_ID}") {{ id }} }}'}),
    ("POST", {"query": "subscription { jobUpdates { id } }"}),
    ("POST", {"query": "{ nope }"}),
    ("GET", {"query": f'mutation {{ deleteJob(id: "{UNKNOWN_ID}") {{ id }} }}'}),
    ("GET", {"query": "{ jobs(first: 2) { totalCount } }"}),
]


def test_prepared_operations_answer_as_strawberry_does(tmp_path: Path) -> None:
    def answers(fast_paths: bool) -> list[tuple[int, Any, str | None]]:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/{fast_paths}.db", fast_paths=fast_paths
        )
        seen = []
        with TestClient(create_app(settings)) as client:
            for method, body in SAME_ANSWERS:
                for accept in ("application/json", "application/graphql-response+json"):
                    for _ in range(2):  # the second time from the prepared operation
                        headers = {"accept": accept}
                        if method == "GET":
                            params = {
                                k: json.dumps(v) if k == "variables" else v for k, v in body.items()
                            }
                            response = client.get("/graphql", params=params, headers=headers)
                        else:
                            response = client.post("/graphql", json=body, headers=headers)
                        seen.append(
                            (response.status_code, response.json(), response.headers.get("allow"))
                        )
        return seen

    prepared, strawberrys = answers(True), answers(False)
    assert len(prepared) == 4 * len(SAME_ANSWERS)
    for request, (ours, theirs) in enumerate(zip(prepared, strawberrys, strict=True)):
        assert ours == theirs, SAME_ANSWERS[request // 4]


def test_cursors_are_sealed_whenever_a_selection_reads_one(client: TestClient) -> None:
    for _ in range(3):
        client.post("/encoding/jobs", json=JOB_INPUT)
    documents = {
        "direct": "{ jobs(first: 2) { edges { cursor } } }",
        "end": "{ jobs(first: 2) { edges { node { id } } pageInfo { endCursor } } }",
        "fragment": "{ jobs(first: 2) { ...Page } } fragment Page on JobConnection { edges { ...E } } fragment E on JobEdge { cursor }",
        "inline": "{ jobs(first: 2) { edges { ... on JobEdge { cursor } } } }",
    }
    for name, document in documents.items():
        data = client.post("/graphql", json={"query": document}).json()["data"]["jobs"]
        cursor = data["pageInfo"]["endCursor"] if name == "end" else data["edges"][-1]["cursor"]
        assert cursor, name
        after = client.post(
            "/graphql",
            json={
                "query": "query($a: String) { jobs(first: 5, after: $a) { edges { node { id } } } }",
                "variables": {"a": cursor},
            },
        ).json()
        assert len(after["data"]["jobs"]["edges"]) == 1, name


def test_trusted_documents_over_http_streams(manifest: dict[str, str], tmp_path: Path) -> None:
    """graphql-sse and Apollo multipart streams take the same documents and refusals."""
    sha = listed(manifest, "subscription Progress")[0].removeprefix("sha256:")
    reader = {"authorization": f"Bearer {token(scope='jobs:read')}"}
    with TestClient(create_app(trusted(manifest, tmp_path))) as client:
        for accept in ("text/event-stream", 'multipart/mixed;subscriptionSpec="1.0"'):
            headers = {**reader, "accept": accept}
            unlisted = client.post(
                "/graphql", json={"query": "subscription { jobUpdates { id } }"}, headers=headers
            )
            assert unlisted.status_code == 403, accept
            assert codes(unlisted.json()) == ["OPERATION_NOT_TRUSTED"]
            # Listed, named by its hash: it runs (an unknown job: NOT_FOUND, then the end).
            listed_run = client.post(
                "/graphql",
                json={"variables": {"id": UNKNOWN_ID}, "extensions": apq(sha)},
                headers=headers,
            )
            assert listed_run.status_code == 200, accept
            assert "NOT_FOUND" in listed_run.text and "OPERATION_NOT_TRUSTED" not in listed_run.text
