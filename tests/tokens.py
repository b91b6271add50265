"""Tokens and an authenticating gateway for the access tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
from starlette.testclient import TestClient

from app.auth import issue_token
from app.main import create_app
from app.settings import Settings

SECRET = "k9Vq2LrT8wXz3NbY6mPd1HsJ4fGc7AeU0oIiRtWy5Q"
OTHER_SECRET = "Zr5Qm8Tn2Wb6Yc9Vx3Lp7Kd1Hg4Jf0SaEuIoPtRy"
PUBLIC_URL = "https://api.example.test"
ALL = "jobs:read jobs:write jobs:report"

JOB_INPUT = {
    "inputs": ["340dd145-c06b-4d72-a8cc-0f6b270eb065"],
    "profile": "2876db3d-ed16-4cf2-af82-98a383009e3c",
    "video": "62dcb602-e95b-483c-badf-9497914717a5",
}


def token(tenant: str = "acme", scope: str = ALL, secret: str = SECRET, ttl: int = 86400) -> str:
    # A day: module-level tokens are made at collection, maybe long before use.
    return issue_token(secret, tenant, scope.split(), ttl, subject="tests")


def expired_token(tenant: str = "acme", scope: str = ALL) -> str:
    now = int(time.time())
    claims = {"sub": "tests", "tenant": tenant, "scope": scope, "iat": now - 7200}
    return jwt.encode({**claims, "exp": now - 3600}, SECRET, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def auth_settings(where: Path | str, **overrides: Any) -> Settings:
    """Settings with AUTH_JWT_SECRET; `where` is a folder for SQLite, or a database URL."""
    return Settings(
        database_url=where if isinstance(where, str) else f"sqlite:///{where}/jobs.db",
        public_url=PUBLIC_URL,
        auth_jwt_secret=SECRET,
        **overrides,
    )


@contextmanager
def gateway(
    settings: Settings, base_url: str = PUBLIC_URL, raise_server_exceptions: bool = True
) -> Iterator[TestClient]:
    """The real app, with its lifespan, behind Starlette's TestClient."""
    app = create_app(settings)
    with TestClient(
        app, base_url=base_url, raise_server_exceptions=raise_server_exceptions
    ) as client:
        yield client


def create_job(client: TestClient, tenant: str = "acme") -> dict[str, Any]:
    response = client.post("/encoding/jobs", json=JOB_INPUT, headers=bearer(token(tenant)))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def read_job(client: TestClient, job_id: str, tenant: str = "acme") -> dict[str, Any]:
    response = client.get(f"/encoding/jobs/{job_id}", headers=bearer(token(tenant)))
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job
