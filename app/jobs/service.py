"""`Jobs`: one caller's view of the jobs, the one way GraphQL and REST reach them.

Built per request for the caller's tenant, so every read and change is scoped
in the store itself, never filtered afterwards. It is also the one place that
decides what each token scope allows: `jobs:read` reads (and subscribes),
`jobs:write` creates and deletes, `jobs:report` updates progress and status.
A database that cannot be reached makes any call fail with `Unavailable`
(app.outages), whichever way it came in.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from databases import Database

from app.auth import ALL_SCOPES, READ, REPORT, WRITE, Caller, require
from app.errors import JobNotFound
from app.jobs import idempotency, keys, store
from app.jobs.cursors import CursorCodec
from app.jobs.events import JobEvents
from app.jobs.mailbox import JobStream
from app.jobs.model import Created, Job, JobChange, JobFilter, JobStatus, NewJob, Page
from app.outages import database_calls
from app.webhooks.outbox import Outbox


@dataclass(frozen=True, slots=True)
class Jobs:
    database: Database
    tenant: str
    # Requests get their token's scopes (`for_caller`); in-process callers all.
    scopes: frozenset[str] = ALL_SCOPES
    # Where committed changes are announced and subscriptions opened.
    events: JobEvents = field(kw_only=True)
    # Seals list positions for this tenant (GraphQL `after`, REST `cursor`).
    cursors: CursorCodec = field(kw_only=True)
    # Seconds an idempotency key of a create is remembered (IDEMPOTENCY_KEY_TTL).
    key_ttl: int = field(default=idempotency.DEFAULT_TTL, kw_only=True)
    # Where each change records the webhook deliveries it causes (in its transaction).
    outbox: Outbox = field(kw_only=True, default=store.DEFAULT_OUTBOX)

    @classmethod
    def for_caller(
        cls,
        database: Database,
        events: JobEvents,
        cursors: CursorCodec,
        caller: Caller,
        *,
        key_ttl: int = idempotency.DEFAULT_TTL,
        outbox: Outbox = store.DEFAULT_OUTBOX,
    ) -> Jobs:
        return cls(
            database,
            caller.tenant,
            caller.scopes,
            events=events,
            cursors=cursors,
            key_ttl=key_ttl,
            outbox=outbox,
        )

    def cursor(self, job: Job) -> str:
        """The opaque cursor of `job`'s position, for this tenant only."""
        return self.cursors.encode(self.tenant, job.seq)

    def position(self, cursor: str, field: str) -> int:
        """What `cursor` points at; `BAD_USER_INPUT` naming `field` unless this
        tenant was given it."""
        return self.cursors.decode(self.tenant, cursor, field)

    def allow(self, scope: str) -> None:
        require(self.scopes, scope)

    async def get(self, job_id: uuid.UUID) -> Job | None:
        self.allow(READ)
        with database_calls():
            return await store.get_job(self.database, self.tenant, job_id)

    async def list(self, job_filter: JobFilter, first: int, after: int | None = None) -> Page:
        self.allow(READ)
        with database_calls():
            return await store.list_jobs(self.database, self.tenant, job_filter, first, after)

    async def count(self, job_filter: JobFilter) -> int:
        self.allow(READ)
        with database_calls():
            return await store.count_jobs(self.database, self.tenant, job_filter)

    async def create(
        self,
        new: NewJob,
        idempotency_key: str | None = None,
        *,
        key_field: str = idempotency.ARGUMENT,
    ) -> Created:
        """Create a job; with an idempotency key, at most one per key and tenant while
        the key lasts (`keys.create_job_once`). `key_field` names the key in errors."""
        self.allow(WRITE)
        if idempotency_key is None:
            with database_calls():
                job = await store.create_job(self.database, self.tenant, new, self.outbox)
            created = Created(job, replayed=False)
        else:
            key = idempotency.for_request(idempotency_key, new, key_field)
            with database_calls():
                created = await keys.create_job_once(
                    self.database,
                    self.tenant,
                    new,
                    key,
                    timedelta(seconds=self.key_ttl),
                    self.outbox,
                )
        # A replay created nothing: subscribers heard of the job when it was created.
        if not created.replayed:
            await self.events.publish(created.job)
        return created

    async def delete(self, job_id: uuid.UUID) -> Job:
        self.allow(WRITE)
        with database_calls():
            job = await store.delete_job(self.database, self.tenant, job_id, self.outbox)
        # Deleting again changes nothing; listeners drop the repeated state.
        await self.events.publish(job)
        return job

    async def update_progress(
        self, job_id: uuid.UUID, progress: int | None, status: JobStatus | None = None
    ) -> Job:
        self.allow(REPORT)
        with database_calls():
            job = await store.update_progress(
                self.database, self.tenant, job_id, progress, status, self.outbox
            )
        await self.events.publish(job)
        return job

    async def follow(self, job_id: uuid.UUID) -> JobStream:
        """The job's current state, then each change, ending after it finishes."""
        self.allow(READ)
        # Listen before reading: a change committed meanwhile is heard, not missed.
        mailbox = self.events.follow(self.tenant, job_id)
        try:
            with database_calls():
                job = await store.get_job(self.database, self.tenant, job_id)
        except BaseException:
            self.events.release(mailbox)
            raise
        if job is None:
            self.events.release(mailbox)
            raise JobNotFound(job_id)
        return self.events.stream(mailbox, snapshot=job)

    def watch(self, job_filter: JobFilter) -> JobStream:
        """Every job of this tenant created or changed from now on, as `concerns` says."""
        self.allow(READ)
        return self.events.stream(self.events.watch(self.tenant, job_filter))


@dataclass(frozen=True, slots=True)
class StoredStates:
    """Jobs' current states, any tenant's, for `JobEvents` to catch subscribers up
    after a broker outage (`app.jobs.catchup.CurrentStates`)."""

    database: Database

    async def by_id(self, job_ids: Collection[uuid.UUID]) -> list[Job]:
        with database_calls():
            return await store.jobs_by_id(self.database, job_ids)

    async def changed_since(self, tenant: str, since: datetime, limit: int) -> list[Job]:
        with database_calls():
            return await store.changed_since(self.database, tenant, since, limit)

    async def last_change(self) -> int:
        with database_calls():
            return await store.last_change(self.database)

    async def changes_after(self, after: int, limit: int) -> list[JobChange]:
        with database_calls():
            return await store.changes_after(self.database, after, limit)

    @property
    def commits_out_of_order(self) -> bool:
        return self.database.url.dialect != "sqlite"
