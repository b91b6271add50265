"""GraphiQL and the jobs page in a real headless Chromium, against a real server.

The browser work is in tests/browser/*.mjs (playwright-core driving Debian's
/usr/bin/chromium); each script prints a report that these tests check: the
steps passed, no request left 127.0.0.1, no script error. Screenshots go to
artifacts/browser/.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import pytest

from app.web import assets
from support.servers import ROOT, Server, start_server
from tests.jobs_data import request_object

CHROMIUM = Path("/usr/bin/chromium")
SCRIPTS = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "artifacts" / "browser"
SECRET = secrets.token_urlsafe(32)


def _missing_tool() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Node.js 18+ runs the browser scripts)"
    if not CHROMIUM.exists():
        return "chromium is not installed: apt-get install -y chromium"
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed: npm ci"
    return assets.install_hint()


pytestmark = pytest.mark.skipif(
    _missing_tool() is not None, reason=_missing_tool() or "browser tools installed"
)


def token(scope: str, subject: str = "browser-test") -> str:
    claims = {"sub": subject, "tenant": "browser", "scope": scope}
    return jwt.encode({**claims, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def auth(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(scope)}"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Server]:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", "AUTH_JWT_SECRET": SECRET}
    server = start_server(env, tmp_path / "server.log")
    yield server
    server.stop()


def create_job(server: Server, **report: int) -> str:
    response = httpx.post(
        server.url + "/encoding/jobs", json=request_object(), headers=auth("jobs:write")
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    if report:
        patched = httpx.patch(
            f"{server.url}/encoding/jobs/{job_id}", json=report, headers=auth("jobs:report")
        )
        assert patched.status_code == 200, patched.text
    return job_id


def run_script(name: str, **args: Any) -> dict[str, Any]:
    process = subprocess.run(
        ["node", str(SCRIPTS / name), json.dumps({"artifacts": str(ARTIFACTS), **args})],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = process.stdout.strip().splitlines()
    if not lines:
        pytest.fail(f"{name} printed no report (exit {process.returncode}):\n{process.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    done = "\n  ".join(result.get("steps", []))
    assert result["ok"], f"{name}: {result['error']}\nsteps passed:\n  {done}\n{process.stderr}"
    assert process.returncode == 0
    assert result["blocked"] == [], "requests left 127.0.0.1"
    assert result["errors"] == [], "errors in the page"
    return result


def test_graphiql_runs_a_query_and_shows_a_subscription_as_a_worker_reports(
    gateway: Server,
) -> None:
    job_id = create_job(gateway)
    create_job(gateway, progress=100, status=1)

    result = run_script(
        "graphiql.mjs",
        base=gateway.url,
        readToken=token("jobs:read"),
        reportToken=token("jobs:report"),
        jobId=job_id,
        totalCount=2,
    )

    assert result["steps"][-1] == "subscription showed COMPLETED"
    assert all(url == gateway.ws_url for url in result["websockets"])
    assert result["websockets"], "the subscription went over a WebSocket"


def test_jobs_page_lists_jobs_and_follows_progress_without_reloading(gateway: Server) -> None:
    moving = create_job(gateway)
    others = [
        create_job(gateway, progress=100, status=1),
        create_job(gateway, progress=60, status=10),
        create_job(gateway, progress=20),
    ]

    result = run_script(
        "jobs_page.mjs",
        base=gateway.url,
        readToken=token("jobs:read"),
        writeToken=token("jobs:write"),
        reportToken=token("jobs:report"),
        jobIds=[moving, *others],
    )

    assert result["steps"][-1] == "no reload"
    assert (ARTIFACTS / "jobs-page.png").stat().st_size > 0


def test_no_token_is_left_in_browser_storage_after_graphiql_and_forget(gateway: Server) -> None:
    create_job(gateway)
    page_token, graphiql_token, old_token = (
        token("jobs:read", subject) for subject in ("jobs-page", "graphiql", "older-page")
    )

    result = run_script(
        "token_storage.mjs",
        base=gateway.url,
        pageToken=page_token,
        graphiqlToken=graphiql_token,
        oldToken=old_token,
        totalCount=1,
    )

    assert result["steps"][-1] == "GraphiQL after Forget: no token"
