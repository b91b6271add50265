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

from alembic.config import Config
from alembic.script import ScriptDirectory
from databases import Database

from app import db
from app.jobs.events import BroadcastUnavailable, JobEvents
from app.outages import reason

# Seconds one check may take: an answer to a probe must not hang on a dead peer.
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Report:
    database: str | None
    migrations: str | None
    broadcast: str | None

    @property
    def problems(self) -> list[str]:
        found = (
            ("database", self.database),
            ("migrations", self.migrations),
            ("broadcast", self.broadcast),
        )
        return [f"{name}: {problem}" for name, problem in found if problem]


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
    return None


def hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    return ScriptDirectory.from_config(config)
