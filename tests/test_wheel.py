"""The built wheel is enough: installed in a fresh venv outside the checkout, with
no node_modules anywhere near it, it serves GraphiQL and the jobs page, which
render in Chromium with the network closed (tests/browser/wheel_pages.mjs).

Slow by nature (a wheel build, a venv, ~35 packages installed): marked `slow`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from app.web import assets
from support.servers import ROOT, start_server
from tests.jobs_data import request_object
from tests.test_browser import _missing_tool, run_script

pytestmark = [
    pytest.mark.skipif(
        _missing_tool() is not None, reason=_missing_tool() or "browser tools installed"
    ),
    pytest.mark.slow,
]


def _run(*command: str | Path, cwd: Path) -> str:
    process = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, f"{command}:\n{process.stdout}\n{process.stderr}"
    return process.stdout


def test_the_wheel_alone_serves_both_pages_offline(tmp_path: Path) -> None:
    # The wheel, built as a release would be; the build takes the browser files from
    # this checkout's node_modules (hatch_build.py).
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("jobs_gateway-*.whl")

    # A fresh venv in a temporary folder, the wheel and the locked dependencies in it.
    # No pip inside it nor byte-compiling: this pip installs into it, faster.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    pip.append("--no-compile")
    _run(*pip, "-c", ROOT / "constraints.txt", wheel, cwd=tmp_path)
    where = json.loads(
        _run(
            python,
            "-c",
            "import json, app, app.web.assets as a; "
            "print(json.dumps([app.__file__, str(a.LOCATION), a.missing()]))",
            cwd=tmp_path,
        )
    )
    package, location, missing = where
    assert Path(package).is_relative_to(venv), "the installed package, not the checkout's"
    assert Path(location).is_relative_to(venv) and Path(location).name == "bundled"
    assert missing == []

    # Served by the installed command, from a folder that is not the checkout, in
    # open mode (loopback; no token to type into the pages).
    home = tmp_path / "home"
    home.mkdir()
    env = {"DATABASE_URL": f"sqlite:///{home}/jobs.db", "AUTH_JWT_SECRET": "", "PYTHONPATH": ""}
    command = (str(venv / "bin" / "jobs-gateway"),)
    # Its first start compiles what it imports (installed without byte-compiling).
    server = start_server(env, home / "server.log", timeout=90, command=command, cwd=home)
    try:
        graphiql = httpx.get(server.url + "/vendor/graphiql/graphiql.min.js")
        assert graphiql.status_code == 200
        assert graphiql.content == (assets.NODE_MODULES / "graphiql/graphiql.min.js").read_bytes()
        created = httpx.post(server.url + "/encoding/jobs", json=request_object())
        assert created.status_code == 201, created.text

        result = run_script("wheel_pages.mjs", base=server.url, jobId=created.json()["id"])
    finally:
        server.stop()
    assert result["steps"][-1] == "jobs page listed the job, live"
    assert "cannot load" not in (home / "server.log").read_text()
