"""The REST API's OpenAPI document against a real server: schemathesis finds no
failure, every documented error and scope is what the server does, and the
document lists exactly the routes the app serves."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import schemathesis
from starlette.routing import Route

from app import openapi
from app.auth import SCOPES
from app.main import create_app
from app.settings import Settings
from support.servers import ROOT, Server, start_server
from tests.tokens import ALL, JOB_INPUT, SECRET, bearer, token

CONFIG = ROOT / "tests" / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Produced elsewhere, where the conditions can be made: 503 with the database
# gone (tests/test_database_outage.py), 408 a body sent too slowly
# (tests/test_http_limits.py).
ELSEWHERE = {"408", "503"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    where = tmp_path_factory.mktemp("openapi")
    env = {"DATABASE_URL": f"sqlite:///{where}/jobs.db", "AUTH_JWT_SECRET": SECRET}
    gateway = start_server(env, where / "server.log")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    response = httpx.get(server.url + openapi.PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def schema(document: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_dict(document)


def test_schemathesis_finds_no_failure_against_a_running_server(
    server: Server, tmp_path: Path
) -> None:
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run"]
    command += [server.url + openapi.PATH, "--header", f"Authorization: Bearer {token()}"]
    # In a temporary folder: schemathesis writes nothing into the checkout.
    process = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = process.stdout + process.stderr
    assert process.returncode == 0, output
    assert "No issues found" in output, output
    assert "5 selected / 5 total" in output, output


def test_the_document_is_valid_openapi_served_without_a_token_naming_the_server(
    document: dict[str, Any], schema: Any, server: Server
) -> None:
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises if not
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": server.url}]
    scheme = document["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_the_document_lists_exactly_the_rest_routes_the_app_serves(
    document: dict[str, Any], tmp_path: Path
) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db"))
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/encoding/jobs")
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == served


def _request(server: Server, path: str, method: str, job_id: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", bearer(token()))
    return httpx.request(method, server.url + path.replace("{id}", job_id), **kwargs)


def _job(server: Server, **report: int) -> str:
    created = httpx.post(server.url + "/encoding/jobs", json=JOB_INPUT, headers=bearer(token()))
    assert created.status_code == 201, created.text
    job_id: str = created.json()["id"]
    if report:
        url = f"{server.url}/encoding/jobs/{job_id}"
        assert httpx.patch(url, json=report, headers=bearer(token())).status_code == 200
    return job_id


UNKNOWN = "00000000-0000-4000-8000-000000000000"


def _errors(server: Server, path: str, method: str) -> dict[str, httpx.Response]:
    """Each error status this operation can answer, produced for real."""
    has_id = "{id}" in path
    has_body = method in ("post", "patch")
    body = {"progress": 10} if path.endswith("{id}") else JOB_INPUT
    job = _job(server) if has_id else ""
    errors = {
        "401": _request(server, path, method, job, json=body, headers={}),
        "403": _request(server, path, method, job, json=body, headers=bearer(token(scope=""))),
        "405": _request(server, path, "put", job),
    }
    if has_id:
        errors["404"] = _request(server, path, method, UNKNOWN, json=body)
        errors["422"] = _request(server, path, method, "not-a-uuid", json=body)
    elif method == "get":
        errors["422"] = _request(server, path, method, job, params={"limit": 0})
    else:
        errors["422"] = _request(server, path, method, job, json={"inputs": []})
    if has_body:
        errors["400"] = _request(server, path, method, job, content=b"{", headers=_json_headers())
        errors["415"] = _request(server, path, method, job, content=b"{}", headers=bearer(token()))
        too_large = b" " * (Settings().max_body_bytes + 1)
        errors["413"] = _request(
            server, path, method, job, content=too_large, headers=_json_headers()
        )
    if method == "patch":
        errors["409"] = _request(server, path, method, _job(server, progress=50), json=body)
    if method == "post":
        # A retry key that already created a job from another request.
        keyed = {**bearer(token()), "Idempotency-Key": f"openapi-{uuid.uuid4()}"}
        _request(server, path, method, job, json=body, headers=keyed)
        other = {**body, "inputs": [str(uuid.uuid4())]}
        errors["409"] = _request(server, path, method, job, json=other, headers=keyed)
    return errors


def _json_headers() -> dict[str, str]:
    return {**bearer(token()), "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/encoding/jobs", "post"),
        ("/encoding/jobs", "get"),
        ("/encoding/jobs/{id}", "get"),
        ("/encoding/jobs/{id}", "delete"),
        ("/encoding/jobs/{id}", "patch"),
    ],
)
def test_every_documented_error_is_answered_as_documented(
    server: Server, document: dict[str, Any], schema: Any, path: str, method: str
) -> None:
    documented = set(document["paths"][path][method]["responses"])
    errors = _errors(server, path, method)
    produced = {
        status for status, response in errors.items() if str(response.status_code) == status
    }
    assert produced == set(errors), {s: r.status_code for s, r in errors.items()}
    # Every error status the document names for this operation is produced here
    # (or where its conditions can be made), and matches what it says.
    assert documented - {"default"} - ELSEWHERE - {"200", "201"} == produced - {"405"}
    operation = schema[path][method.upper()]
    for response in errors.values():
        operation.validate_response(response)
    assert errors["401"].headers["WWW-Authenticate"] == 'Bearer realm="jobs"'
    assert set(errors["405"].headers["Allow"].split(", ")) >= {
        m.upper() for m in document["paths"][path]
    }


@pytest.mark.parametrize("scope", SCOPES)
def test_each_operation_needs_exactly_its_documented_scope(
    server: Server, document: dict[str, Any], scope: str
) -> None:
    others = " ".join(other for other in SCOPES if other != scope)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            (needed,) = operation["security"][0][openapi.SECURITY_SCHEME]
            if needed != scope:
                continue
            job = _job(server)
            body = {"progress": 10} if path.endswith("{id}") else JOB_INPUT
            json_body = body if method in ("post", "patch") else None
            without = _request(
                server, path, method, job, json=json_body, headers=bearer(token(scope=others))
            )
            assert without.status_code == 403, (method, path, without.text)
            alone = _request(
                server, path, method, job, json=json_body, headers=bearer(token(scope=scope))
            )
            assert alone.status_code in (200, 201), (method, path, alone.text)


def test_a_json_integer_may_be_written_with_a_zero_fraction_as_graphql_takes_it(
    server: Server,
) -> None:
    # JSON (and the document's "integer") make 40 and 40.0 one number.
    job = _job(server)
    answer = _request(server, "/encoding/jobs/{id}", "patch", job, json={"progress": 40.0})
    assert answer.status_code == 200, answer.text
    assert answer.json()["progress"] == 40
    finished = _request(server, "/encoding/jobs/{id}", "patch", job, json={"status": 1.0})
    assert finished.json()["status"] == 1
    refused = _request(server, "/encoding/jobs/{id}", "patch", _job(server), json={"progress": 4.5})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == "progress: must be an integer"


def test_a_method_a_path_lacks_is_405_naming_every_method_it_has(server: Server) -> None:
    for path, allowed in (
        ("/encoding/jobs", "GET, HEAD, POST"),
        (f"/encoding/jobs/{UNKNOWN}", "DELETE, GET, HEAD, PATCH"),
    ):
        response = httpx.put(server.url + path, headers=bearer(token(scope=ALL)))
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert sorted(response.headers["Allow"].split(", ")) == allowed.split(", ")
