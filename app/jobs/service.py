"""`Jobs`: one caller's view of the jobs, the one way GraphQL and REST reach them.

Built per request for the caller's tenant, so every read and change is scoped
in the store itself, never filtered afterwards. It is also the one place that
decides what each token scope allows: `jobs:read` reads (and subscribes),
`jobs:write` creates and deletes, `jobs:report` updates progress and status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from databases import Database

from app.auth import ALL_SCOPES, READ, REPORT, WRITE, Caller
from app.errors import Forbidden
from app.jobs import store
from app.jobs.model import Job, JobFilter, JobStatus, NewJob, Page


@dataclass(frozen=True, slots=True)
class Jobs:
    database: Database
    tenant: str
    # Requests get their token's scopes (`for_caller`); in-process callers all.
    scopes: frozenset[str] = ALL_SCOPES

    @classmethod
    def for_caller(cls, database: Database, caller: Caller) -> Jobs:
        return cls(database, caller.tenant, caller.scopes)

    def allow(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this token lacks the {scope} scope")

    async def get(self, job_id: uuid.UUID) -> Job | None:
        self.allow(READ)
        return await store.get_job(self.database, self.tenant, job_id)

    async def list(self, job_filter: JobFilter, first: int, after: int | None = None) -> Page:
        self.allow(READ)
        return await store.list_jobs(self.database, self.tenant, job_filter, first, after)

    async def count(self, job_filter: JobFilter) -> int:
        self.allow(READ)
        return await store.count_jobs(self.database, self.tenant, job_filter)

    async def create(self, new: NewJob) -> Job:
        self.allow(WRITE)
        return await store.create_job(self.database, self.tenant, new)

    async def delete(self, job_id: uuid.UUID) -> Job:
        self.allow(WRITE)
        return await store.delete_job(self.database, self.tenant, job_id)

    async def update_progress(
        self, job_id: uuid.UUID, progress: int | None, status: JobStatus | None = None
    ) -> Job:
        self.allow(REPORT)
        return await store.update_progress(self.database, self.tenant, job_id, progress, status)
