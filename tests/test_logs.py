"""app.logs.Throttle: what the outage, broker, change-feed and connection-limit logs share."""

from app.logs import Throttle


def test_a_repeated_condition_is_logged_once_per_period_per_key() -> None:
    throttle = Throttle(60.0)
    assert throttle.ready("OSError")
    assert not throttle.ready("OSError")
    # Another kind of outage is news of its own.
    assert throttle.ready("ConnectionRefusedError")
    assert throttle.ready() and not throttle.ready()


def test_ready_again_after_the_period() -> None:
    throttle = Throttle(0.0)
    assert throttle.ready() and throttle.ready()


# --- LOG_FORMAT, request ids, no secrets: a real gateway process, every line it writes ---

import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import anyio  # noqa: E402
import httpx2 as httpx  # noqa: E402
import pytest  # noqa: E402

from app.logs import operation_label, redact  # noqa: E402
from support.servers import start_server  # noqa: E402
from tests.tokens import JOB_INPUT, SECRET, bearer, token  # noqa: E402
from tests.wsclient import JOB_PROGRESS, graphql_socket  # noqa: E402

CREATE_NAMED = "mutation CreateJob($input: CreateJobInput!) { createJob(input: $input) { id } }"


async def _traffic(url: str, sent: str) -> dict[str, str]:
    """Requests carrying the token every way a client might: header, query, WebSocket."""
    ws_url = "ws" + url.removeprefix("http") + "/graphql"
    seen: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=url, headers=bearer(sent)) as http:
        created = await http.post(
            "/graphql",
            json={"query": CREATE_NAMED, "variables": {"input": JOB_INPUT}},
            headers={"X-Request-ID": "client-id-1"},
        )
        assert created.status_code == 200 and "errors" not in created.json(), created.text
        seen["given"] = created.headers["x-request-id"]
        job_id = created.json()["data"]["createJob"]["id"]
        # A token in the URL (some clients do): uvicorn's access line holds the URL.
        listed = await http.get(f"/encoding/jobs?limit=1&access_token={sent}")
        assert listed.status_code == 200
        seen["made"] = listed.headers["x-request-id"]
        # An id that is not sane (too long) is replaced, never echoed.
        replaced = await http.get("/healthz", headers={"X-Request-ID": "x" * 200})
        seen["replaced"] = replaced.headers["x-request-id"]
        # A bad token (the real one, altered) is refused; it is not logged either.
        refused = await http.get("/encoding/jobs", headers=bearer(sent + "x"))
        assert refused.status_code == 401
    with anyio.fail_after(10):
        async with graphql_socket(
            f"{ws_url}?token={sent}", payload={"Authorization": f"Bearer {sent}"}
        ) as ws:
            await ws.subscribe("p", JOB_PROGRESS, id=job_id)
            assert (await ws.job("p"))["id"] == job_id
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_no_token_or_secret_reaches_any_log_line_and_json_lines_say_whose_request(
    tmp_path: Path, log_format: str
) -> None:
    sent = token("acme")
    log = tmp_path / "server.log"
    server = start_server(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
            "AUTH_JWT_SECRET": SECRET,
            "LOG_FORMAT": log_format,
        },
        log,
        # Not loopback-only: a secret is set; access lines at info, as by default.
        args=("--log-level", "info"),
        timeout=60,
    )
    try:
        seen = await _traffic(server.url, sent)
    finally:
        server.stop()
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert any("/encoding/jobs?limit=1&access_token=[REDACTED]" in line for line in lines), text
    signature = sent.rsplit(".", 1)[1]
    for line in lines:
        assert sent not in line and signature not in line and SECRET not in line, line

    assert seen["given"] == "client-id-1"
    assert re.fullmatch(r"[0-9a-f]{32}", seen["made"]) and re.fullmatch(
        r"[0-9a-f]{32}", seen["replaced"]
    )
    if log_format == "text":  # the readable format, as it always was
        assert any(line.startswith("INFO:") and "POST /graphql" in line for line in lines), text
        assert not any(line.startswith("{") for line in lines), text
        return
    records = [json.loads(line) for line in lines]  # every line one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    [create] = [r for r in records if r.get("request_id") == "client-id-1"]
    assert create["logger"] == "uvicorn.access" and create["status"] == 200
    assert create["tenant"] == "acme" and create["operation"] == "mutation CreateJob"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", create["time"])
    assert "trace_id" not in create  # tracing is off
    [listing] = [r for r in records if r.get("request_id") == seen["made"]]
    assert listing["tenant"] == "acme" and "operation" not in listing


def test_redaction_covers_bearer_tokens_jwts_credential_parameters_and_named_secrets() -> None:
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert redact(f"Authorization: Bearer {jwt_like}") == "Authorization: Bearer [REDACTED]"
    assert redact(f"got {jwt_like} here") == "got [REDACTED] here"
    assert redact("GET /x?password=hunter2&a=1") == "GET /x?password=[REDACTED]&a=1"
    assert redact("basic dXNlcjpwYXNz") == "basic [REDACTED]"
    assert redact("key is s3cr3t-value-123", ["s3cr3t-value-123"]) == "key is [REDACTED]"
    assert redact("an ordinary line about tokens") == "an ordinary line about tokens"


def test_an_operation_is_labelled_by_its_type_and_name_or_first_root_field() -> None:
    assert operation_label(CREATE_NAMED) == "mutation CreateJob"
    assert operation_label("{ jobs(first: 5) { totalCount } }") == "query jobs"
    assert operation_label("subscription { p: jobProgress(id: 1) { id } }") == (
        "subscription jobProgress"
    )
    assert operation_label("query A { a } query B { b }", "B") == "query B"
    assert operation_label(None) is None
