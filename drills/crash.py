"""Crash safety: workers create jobs and report progress while the gateway is SIGKILLed.

    .venv/bin/python -m drills.crash [--kills 20] [--database sqlite|postgresql|both]
                                    [--writers 8] [--seed N]

Each round starts the real gateway (`python -m app serve`), lets `--writers`
concurrent clients create jobs and report on them as fast as they can (REST and
GraphQL mixed: progress, COMPLETED, FAILED, deletes), and kills the process with
SIGKILL at a random moment 0.2-1.5 s in. The gateway is started again and every
job is read back:

- a write the gateway acknowledged must be there exactly as acknowledged (status,
  progress, deletion, inputs, timestamps: the whole job);
- a write whose answer was lost in the kill may or may not have been applied; if it
  was, the job is exactly what that write makes of it, and nothing else;
- a job the clients never heard of may exist only if a create's answer was lost,
  and then only as a new job (status 0, progress 0).

PostgreSQL runs on a database of its own on TEST_POSTGRES_URL's server (skipped if
unset). Everything is on 127.0.0.1 and the run stops by itself; the table shows,
per database, the writes acknowledged, those whose answers were lost (and whether
they were applied), and the writes lost or changed, which must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python drills/crash.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2 as httpx

from support import report
from support.servers import Server, start_server

PROFILE = "2876db3d-ed16-4cf2-af82-98a383009e3c"
# Seconds the gateway may take to start again (a busy machine, a long WAL to replay).
START_LIMIT = 120.0
JOB_FIELDS = "id status statusCode progress profile video inputs createdAt updatedAt deletedAt"
REPORT = (
    "mutation($id: UUID!, $progress: Int!, $status: JobStatus) {"
    f" updateJobProgress(id: $id, progress: $progress, status: $status) {{ {JOB_FIELDS} }} }}"
)
DELETE = f"mutation($id: UUID!) {{ deleteJob(id: $id) {{ {JOB_FIELDS} }} }}"
STATUS_NAMES = {"COMPLETED": 1, "FAILED": 10}


@dataclass(frozen=True)
class State:
    """What a client knows of a job, from a REST or a GraphQL answer alike."""

    status: int
    progress: int
    deleted: bool
    inputs: tuple[str, ...]
    profile: str
    video: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_rest(cls, job: dict[str, Any]) -> State:
        return cls(
            status=job["status"],
            progress=job["progress"],
            deleted=job["deleted_at"] is not None,
            inputs=tuple(job["inputs"]),
            profile=job["profile"],
            video=job["video"],
            created_at=datetime.fromisoformat(job["created_at"]),
            updated_at=datetime.fromisoformat(job["updated_at"]),
        )

    @classmethod
    def from_graphql(cls, job: dict[str, Any]) -> State:
        return cls(
            status=job["statusCode"],
            progress=job["progress"],
            deleted=job["deletedAt"] is not None,
            inputs=tuple(job["inputs"]),
            profile=job["profile"],
            video=job["video"],
            created_at=datetime.fromisoformat(job["createdAt"]),
            updated_at=datetime.fromisoformat(job["updatedAt"]),
        )


@dataclass(frozen=True)
class Change:
    """A write on an existing job: new progress and/or status, or a delete."""

    progress: int | None = None
    status: int | None = None
    delete: bool = False

    def applied_to(self, before: State, stored: State) -> bool:
        """Whether `stored` is exactly `before` with this change applied."""
        if stored.updated_at < before.updated_at or (
            stored.inputs,
            stored.profile,
            stored.video,
            stored.created_at,
        ) != (before.inputs, before.profile, before.video, before.created_at):
            return False
        if self.delete:
            return stored.deleted and (stored.status, stored.progress) == (
                before.status,
                before.progress,
            )
        progress = 100 if self.status == 1 else self.progress
        return (
            not stored.deleted
            and stored.status == (self.status or 0)
            and stored.progress == (before.progress if progress is None else progress)
        )


@dataclass
class Tracked:
    state: State
    # A change sent whose answer was lost when the gateway was killed.
    unanswered: Change | None = None

    @property
    def live(self) -> bool:
        return self.unanswered is None and self.state.status == 0 and not self.state.deleted


@dataclass
class Tally:
    acknowledged: int = 0
    unanswered: int = 0
    unanswered_applied: int = 0
    unanswered_creates: int = 0
    unanswered_creates_applied: int = 0
    restarts: list[float] = field(default_factory=list)
    # Each acknowledged write that was not found as acknowledged: must stay empty.
    lost: list[str] = field(default_factory=list)


class Gone(Exception):
    """The gateway stopped answering (it was killed) while a request was under way."""


class NotSent(Exception):
    """The gateway was already gone: the request never reached it."""


class Client:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.ConnectError as exc:
            raise NotSent from exc
        except httpx.TransportError as exc:
            raise Gone from exc

    async def create(self, rng: random.Random) -> tuple[str, State]:
        body = {
            "inputs": [_uuid(rng) for _ in range(rng.randint(1, 3))],
            "profile": PROFILE,
            "video": _uuid(rng),
        }
        response = await self._call("POST", "/encoding/jobs", json=body)
        _expect(response, 201)
        job = response.json()
        return job["id"], State.from_rest(job)

    async def change(self, job_id: str, before: State, change: Change, rng: random.Random) -> State:
        if rng.random() < 0.5:  # REST
            if change.delete:
                response = await self._call("DELETE", f"/encoding/jobs/{job_id}")
            else:
                body = {"progress": change.progress} if change.progress is not None else {}
                if change.status is not None:
                    body["status"] = change.status
                response = await self._call("PATCH", f"/encoding/jobs/{job_id}", json=body)
            _expect(response, 200)
            return State.from_rest(response.json())
        variables: dict[str, object]
        if change.delete:
            query, variables = DELETE, {"id": job_id}
        else:
            status = {1: "COMPLETED", 10: "FAILED"}.get(change.status or 0)
            # GraphQL needs a progress; the one reached already changes nothing.
            progress = change.progress if change.progress is not None else before.progress
            query, variables = REPORT, {"id": job_id, "progress": progress, "status": status}
        response = await self._call(
            "POST", "/graphql", json={"query": query, "variables": variables}
        )
        _expect(response, 200)
        body = response.json()
        if "errors" in body:
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return State.from_graphql(next(iter(body["data"].values())))

    async def read(self, job_id: str) -> State | None:
        response = await self._call("GET", f"/encoding/jobs/{job_id}")
        if response.status_code == 404:
            return None
        _expect(response, 200)
        return State.from_rest(response.json())

    async def every_job(self) -> dict[str, State]:
        found: dict[str, State] = {}
        cursor: str | None = None
        while True:
            params = {"limit": "100", "include_deleted": "true"}
            if cursor:
                params["cursor"] = cursor
            response = await self._call("GET", "/encoding/jobs", params=params)
            _expect(response, 200)
            page = response.json()
            found.update((job["id"], State.from_rest(job)) for job in page["jobs"])
            cursor = page["next_cursor"]
            if cursor is None:
                return found


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text}"
        )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _next_change(state: State, rng: random.Random) -> Change:
    roll = rng.random()
    if roll < 0.05:
        return Change(delete=True)
    if roll < 0.10:
        return Change(progress=min(100, state.progress + rng.randint(0, 10)), status=10)
    if state.progress >= 90 or roll < 0.13:
        return Change(status=1)
    return Change(progress=min(100, state.progress + rng.randint(1, 15)))


async def _writer(
    client: Client, jobs: dict[str, Tracked], tally: Tally, rng: random.Random
) -> None:
    """Write until the gateway dies; the one write then under way is left unanswered."""
    mine: list[str] = []
    while True:
        live = [job_id for job_id in mine if jobs[job_id].live]
        if len(live) < 3 or rng.random() < 0.1:
            try:
                job_id, state = await client.create(rng)
            except NotSent:
                return
            except Gone:
                tally.unanswered_creates += 1
                return
            jobs[job_id] = Tracked(state)
            mine.append(job_id)
        else:
            job_id = rng.choice(live)
            tracked = jobs[job_id]
            change = _next_change(tracked.state, rng)
            try:
                tracked.state = await client.change(job_id, tracked.state, change, rng)
            except NotSent:
                return
            except Gone:
                tracked.unanswered = change
                tally.unanswered += 1
                return
        tally.acknowledged += 1


async def _verify(client: Client, jobs: dict[str, Tracked], tally: Tally, creates: int) -> None:
    """Check every job against what its clients were told; settle unanswered writes."""
    stored = await client.every_job()
    for job_id, tracked in jobs.items():
        found = stored.get(job_id) or await client.read(job_id)
        if found is None:
            tally.lost.append(f"job {job_id}: acknowledged, now missing")
            continue
        if found == tracked.state:
            tracked.unanswered = None
            continue
        change = tracked.unanswered
        if change is not None and change.applied_to(tracked.state, found):
            tally.unanswered_applied += 1
        else:
            tally.lost.append(
                f"job {job_id}: acknowledged {tracked.state}, stored {found} "
                f"(unanswered write: {change})"
            )
        tracked.state = found
        tracked.unanswered = None
    strangers = {job_id: state for job_id, state in stored.items() if job_id not in jobs}
    if len(strangers) > creates:
        tally.lost.append(f"{len(strangers)} unknown jobs, only {creates} creates unanswered")
    for job_id, state in strangers.items():
        if (state.status, state.progress, state.deleted) != (0, 0, False):
            tally.lost.append(f"job {job_id}: nobody changed it, yet it is {state}")
        # From now on it is one of ours (its create's answer was lost, not the job).
        jobs[job_id] = Tracked(state)
    tally.unanswered_creates_applied += len(strangers)


async def run(
    database_url: str,
    kills: int,
    writers: int,
    seed: int,
    folder: Path,
    say: Callable[[str], None] = lambda line: None,
    after_kill: Callable[[int], None] = lambda round_number: None,
) -> Tally:
    """`kills` rounds of write, SIGKILL, restart, verify; the tally of what was seen.

    `after_kill(round)` runs while the gateway is down (a test damages the data there,
    to see the damage reported).
    """
    rng = random.Random(seed)
    jobs: dict[str, Tracked] = {}
    tally = Tally()
    env = {"DATABASE_URL": database_url, "BROADCAST_URL": "memory://"}
    server = await _start(env, folder / "server-0.log", tally)
    try:
        for round_number in range(1, kills + 1):
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                client = Client(http)
                creates_before = tally.unanswered_creates
                writing = [
                    asyncio.create_task(_writer(client, jobs, tally, random.Random(rng.random())))
                    for _ in range(writers)
                ]
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                server.process.kill()
                await asyncio.to_thread(server.process.wait)
                await asyncio.gather(*writing)
            after_kill(round_number)
            server = await _start(env, folder / f"server-{round_number}.log", tally)
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                await _verify(Client(http), jobs, tally, tally.unanswered_creates - creates_before)
            say(
                f"kill {round_number}/{kills}: {tally.acknowledged} acknowledged writes so far, "
                f"{len(tally.lost)} lost"
            )
    finally:
        server.stop()
    return tally


async def _start(env: dict[str, str], log: Path, tally: Tally) -> Server:
    started = time.monotonic()
    server = await asyncio.to_thread(start_server, env, log, (), START_LIMIT)
    tally.restarts.append(time.monotonic() - started)
    return server


def table(results: dict[str, Tally], kills: int) -> str:
    rows = [
        (
            "database",
            "kills",
            "acknowledged writes",
            "unanswered writes (applied)",
            "unanswered creates (applied)",
            "start s (median)",
            "lost or changed",
        )
    ]
    for name, tally in results.items():
        rows.append(
            (
                name,
                str(kills),
                str(tally.acknowledged),
                f"{tally.unanswered} ({tally.unanswered_applied})",
                f"{tally.unanswered_creates} ({tally.unanswered_creates_applied})",
                f"{statistics.median(tally.restarts):.2f}",
                str(len(tally.lost)),
            )
        )
    return report.table(rows[0], rows[1:], right={1, 2, 5, 6})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    print(f"seed {args.seed}")

    engines = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        folder = Path(tmp)
        for engine in engines:
            if engine == "sqlite":
                url = f"sqlite:///{folder}/jobs.db"
                results[engine] = asyncio.run(
                    run(url, args.kills, args.writers, args.seed, folder, print)
                )
                continue
            admin = os.environ.get("TEST_POSTGRES_URL")
            if not admin:
                print("postgresql: skipped, TEST_POSTGRES_URL is not set")
                continue
            from support.postgres import PostgresDatabases

            databases = PostgresDatabases(admin)
            try:
                databases.start()
                results[engine] = asyncio.run(
                    run(databases.fresh(), args.kills, args.writers, args.seed, folder, print)
                )
            finally:
                databases.close()
    print()
    print(table(results, args.kills))
    lost = [line for tally in results.values() for line in tally.lost]
    for line in lost:
        print("LOST:", line)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
