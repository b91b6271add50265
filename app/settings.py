"""Settings, read once from the environment into one frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting has a value the gateway cannot run with; the message says what to fix."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./jobs.db"
    broadcast_url: str = "memory://"
    public_url: str = "http://127.0.0.1:8000"
    auth_jwt_secret: str | None = None
    migrate_on_start: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        settings = cls(
            database_url=env.get("DATABASE_URL") or defaults.database_url,
            broadcast_url=env.get("BROADCAST_URL") or defaults.broadcast_url,
            public_url=(env.get("PUBLIC_URL") or defaults.public_url).rstrip("/"),
            auth_jwt_secret=env.get("AUTH_JWT_SECRET") or None,
            migrate_on_start=_flag(env, "MIGRATE_ON_START", defaults.migrate_on_start),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        _check_database_url(self.database_url)
        _check_broadcast_url(self.broadcast_url)
        public = urlsplit(self.public_url)
        if public.scheme not in ("http", "https") or not public.netloc:
            raise SettingsError(
                f"PUBLIC_URL must be an absolute http(s) URL such as https://api.example.test, "
                f"got {self.public_url!r}"
            )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path:
        return Path(urlsplit(self.database_url).path[1:])


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _check_database_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else ""
        if parts.netloc or not path or path == ":memory:":
            raise SettingsError(
                f"DATABASE_URL must name a SQLite file as sqlite:///PATH "
                f"(e.g. sqlite:///./jobs.db), got {url!r}"
            )
        return
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname or not parts.path.strip("/"):
            raise SettingsError(f"DATABASE_URL must be postgresql://USER@HOST:PORT/DB, got {url!r}")
        return
    raise SettingsError(f"DATABASE_URL must start with sqlite:/// or postgresql://, got {url!r}")


def _check_broadcast_url(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("memory", "redis", "rediss", "postgres", "postgresql"):
        raise SettingsError(
            f"BROADCAST_URL must be memory://, redis://HOST:PORT or postgres://…, got {url!r}"
        )
