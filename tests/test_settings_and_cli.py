"""Settings from the environment, and the command line: one clear line per mistake."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError
from support.servers import ROOT


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///./jobs.db"
    assert settings.broadcast_url == "memory://"
    # Unset: each job's url follows the address served (tests/test_public_url.py).
    assert settings.public_url is None


def test_fast_paths_are_on_unless_turned_off() -> None:
    assert Settings.from_env({}).fast_paths
    assert not Settings.from_env({"FAST_PATHS": "false"}).fast_paths


def test_public_url_loses_its_trailing_slash() -> None:
    assert Settings.from_env({"PUBLIC_URL": "https://x.test/"}).public_url == "https://x.test"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://localhost/jobs"),
        ("DATABASE_URL", "sqlite:///:memory:"),
        ("DATABASE_URL", "sqlite://"),
        ("DATABASE_URL", "postgresql:///nohost"),
        ("BROADCAST_URL", "kafka://x"),
        ("PUBLIC_URL", "api.example.test"),
        ("MAX_WEBSOCKET_CONNECTIONS", "0"),
        ("WEBSOCKET_INIT_TIMEOUT", "soon"),
        ("MIGRATE_ON_START", "perhaps"),
        ("FAST_PATHS", "sometimes"),
        ("IDEMPOTENCY_KEY_TTL", "0"),
        ("IDEMPOTENCY_KEY_TTL", "a day"),
        ("IDEMPOTENCY_KEY_TTL", "604801"),
    ],
)
def test_bad_setting_names_itself(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_serve_with_a_bad_setting_says_what_to_fix_in_one_line() -> None:
    result = run_cli("serve", env={"DATABASE_URL": "mysql://db/jobs"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_an_unreachable_database_says_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "jobs.db"
    result = run_cli("serve", env={"DATABASE_URL": f"sqlite:///{missing}"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "does not exist" in result.stderr


def test_migrate_creates_the_schema_once_in_wal_mode(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db"}
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001" in first.stdout
    again = run_cli("migrate", env=env)
    assert again.returncode == 0
    assert "up to date" in again.stdout
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "jobs" in tables


def test_export_schema_prints_sdl() -> None:
    result = run_cli("export-schema")
    assert result.returncode == 0
    assert "type Query" in result.stdout and "updateJobProgress" in result.stdout
