"""`Jobs`: one caller's view of the jobs, the one way GraphQL and REST reach them.

Built per request for the caller's tenant, so every read and change is scoped
in the store itself, never filtered afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from databases import Database

from app.jobs import store
from app.jobs.model import Job, JobFilter, JobStatus, NewJob, Page


@dataclass(frozen=True, slots=True)
class Jobs:
    database: Database
    tenant: str

    async def get(self, job_id: uuid.UUID) -> Job | None:
        return await store.get_job(self.database, self.tenant, job_id)

    async def list(self, job_filter: JobFilter, first: int, after: int | None = None) -> Page:
        return await store.list_jobs(self.database, self.tenant, job_filter, first, after)

    async def count(self, job_filter: JobFilter) -> int:
        return await store.count_jobs(self.database, self.tenant, job_filter)

    async def create(self, new: NewJob) -> Job:
        return await store.create_job(self.database, self.tenant, new)

    async def delete(self, job_id: uuid.UUID) -> Job:
        return await store.delete_job(self.database, self.tenant, job_id)

    async def update_progress(
        self, job_id: uuid.UUID, progress: int | None, status: JobStatus | None = None
    ) -> Job:
        return await store.update_progress(self.database, self.tenant, job_id, progress, status)
