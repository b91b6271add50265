"""What is wrong, one line each, for an operator: the database, its migrations, the broker.

`/readyz` asks with the running process's own connections; `python -m app check`
with fresh ones built from the settings. Each check answers None when all is well,
else a line saying what is wrong and, where there is one, what to do about it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit, urlunsplit

from alembic.script import ScriptDirectory
from databases import Database
from starlette.requests import Request

from app import db
from app.errors import Unauthenticated
from app.jobs.broker import Broker
from app.jobs.events import BroadcastUnavailable, JobEvents
from app.net import is_loopback
from app.outages import reason
from app.settings import Settings

# Seconds one check may take: an answer to a probe must not hang on a dead peer.
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Report:
    database: str | None
    migrations: str | None
    broadcast: str | None

    def parts(self) -> tuple[tuple[str, str | None], ...]:
        return (
            ("database", self.database),
            ("migrations", self.migrations),
            ("broadcast", self.broadcast),
        )

    @property
    def problems(self) -> list[str]:
        return [f"{name}: {problem}" for name, problem in self.parts() if problem]


def may_see_details(request: Request) -> bool:
    """/readyz in full (addresses, driver errors, counts) is for a caller on this
    machine, or one with a valid token (any scope); others get `summary`. Behind a
    proxy on this machine, the client is the one it names in X-Forwarded-For."""
    client = request.scope.get("client")
    if client and is_loopback(str(client[0])):
        return True
    try:
        request.app.state.verifier.verify(request.headers.get("authorization"))
    except Unauthenticated:
        return False
    return True


def summary(report: Report) -> dict[str, object]:
    """What /readyz tells anyone: ready or not, and which parts are not."""
    return {
        "status": "unavailable" if report.problems else "ready",
        "problems": [name for name, problem in report.parts() if problem],
        "details": "for callers on this machine or with a valid bearer token",
    }


async def report(database: Database, events: JobEvents) -> Report:
    database_problem = await check_database(database)
    return Report(
        database=database_problem,
        # Without a database there is no schema to look at.
        migrations=None if database_problem else await check_migrations(database),
        broadcast=await check_broadcast(events),
    )


async def check_database(database: Database) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await database.fetch_val("SELECT 1")
    except TimeoutError:
        return f"unreachable: no answer within {CHECK_TIMEOUT:g}s"
    except Exception as exc:  # any failure means "not ready": say which
        return f"unreachable: {reason(exc)}"
    return None


async def check_migrations(database: Database) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            current = await database.fetch_val("SELECT version_num FROM alembic_version")
    except TimeoutError:
        return f"cannot read the schema version: no answer within {CHECK_TIMEOUT:g}s"
    except Exception:
        return "the database has no schema yet: run `python -m app migrate`"
    return migration_problem(current)


def migration_problem(current: str | None) -> str | None:
    """What is wrong with a database whose schema is at revision `current`."""
    script = _scripts()
    head = script.get_current_head()
    if current == head:
        return None
    known = {revision.revision for revision in script.walk_revisions()}
    if current is not None and current not in known:
        return (
            f"the schema is at revision {current}, which this version does not know "
            f"(its newest is {head}): a newer version migrated it; run that version"
        )
    pending = [
        revision.revision for revision in reversed(list(script.iterate_revisions(head, current)))
    ]
    return (
        f"{len(pending)} pending ({', '.join(pending)}; the schema is at {current or 'none'}): "
        "run `python -m app migrate`"
    )


async def check_broadcast(events: JobEvents) -> str | None:
    try:
        await events.ping(within=CHECK_TIMEOUT)
    except BroadcastUnavailable as exc:
        return str(exc)
    # Connected, but what it missed while away has yet to reach the subscribers.
    return events.catch_up_problem


@dataclass(frozen=True)
class Line:
    """One line of `python -m app check`."""

    part: str
    problem: str | None
    detail: str = ""

    def __str__(self) -> str:
        if self.problem is None:
            return f"{self.part}: ok ({self.detail})" if self.detail else f"{self.part}: ok"
        return f"{self.part}: {self.problem}"


async def check(settings: Settings) -> list[Line]:
    """Everything `report` looks at, through fresh connections built from the settings."""
    lines = await _check_database(settings)
    broker = Broker(settings.broadcast_url, on_message=lambda message: None)
    try:
        await broker.start()
        broadcast = None
    except BroadcastUnavailable as exc:
        broadcast = str(exc)
    finally:
        await broker.stop()
    lines.append(Line("broadcast", broadcast, hide_password(settings.broadcast_url)))
    return lines


async def _check_database(settings: Settings) -> list[Line]:
    where = hide_password(settings.database_url)
    # Connecting would create a missing SQLite file: a check changes nothing.
    if settings.is_sqlite and not settings.sqlite_path.exists():
        problem = (
            f"SQLite file {str(settings.sqlite_path)!r} does not exist "
            "(`python -m app migrate` or the first start creates it)"
        )
        return [Line("database", problem), Line("migrations", "not checked: no database")]
    try:
        database = await db.connect(settings)
    except db.DatabaseUnavailable as exc:
        return [
            Line("database", f"{exc} ({where})"),
            Line("migrations", "not checked: no database"),
        ]
    try:
        migrations = await check_migrations(database)
        current = None if migrations else _scripts().get_current_head()
    finally:
        await database.disconnect()
    return [
        Line("database", None, where),
        Line("migrations", migrations, f"the schema is at {current}, the newest"),
    ]


def hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def revisions() -> list[str]:
    """Every migration this version has, oldest first."""
    return [revision.revision for revision in reversed(list(_scripts().walk_revisions()))]


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(db.alembic_config())
