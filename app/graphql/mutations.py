"""Change jobs: create, delete, and the encoder workers' progress reports."""

from __future__ import annotations

import uuid
from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.types import CreateJobInput, Job, JobStatus
from app.graphql.webhooks import WebhookMutations


@strawberry.type(description="Create and change encoding jobs.")
class Mutation(WebhookMutations):
    @strawberry.mutation(
        description="Create a job; it starts IN_PROGRESS at progress 0. With an "
        "`idempotencyKey`, sending it again returns the job the first created, as created, "
        "and creates nothing."
    )
    async def create_job(
        self,
        info: Info,
        input: Annotated[CreateJobInput, strawberry.argument(description="The new job.")],
        idempotency_key: Annotated[
            str | None,
            strawberry.argument(
                description="Makes retrying safe: 1-255 printable ASCII characters, unique "
                "per job you mean to create (a UUID, say). The same key with the same input "
                "while the key is remembered (24 hours by default) returns the job first created, and creates nothing; with "
                "a different input it is refused with CONFLICT. Shared with REST's "
                "`Idempotency-Key` header, per tenant."
            ),
        ] = strawberry.UNSET,  # not `= None`: the schema shows no default, as documented
    ) -> Job:
        key = None if idempotency_key is strawberry.UNSET else idempotency_key
        created = await info.context.jobs.create(input.to_new_job(), key)
        return Job.from_record(created.job, info.context.public_url)

    @strawberry.mutation(
        description="Soft-delete a job: sets `deletedAt`. Deleting again returns the job unchanged."
    )
    async def delete_job(
        self,
        info: Info,
        id: Annotated[uuid.UUID, strawberry.argument(description="The job's id.")],
    ) -> Job:
        job = await info.context.jobs.delete(id)
        return Job.from_record(job, info.context.public_url)

    @strawberry.mutation(
        description="Report a job's progress, and optionally its end (for encoder workers). "
        "Only an IN_PROGRESS job changes; progress never goes down (CONFLICT); "
        "COMPLETED sets progress to 100; FAILED keeps the progress reached."
    )
    async def update_job_progress(
        self,
        info: Info,
        id: Annotated[uuid.UUID, strawberry.argument(description="The job's id.")],
        progress: Annotated[int, strawberry.argument(description="Percent encoded, 0..100.")],
        status: Annotated[
            JobStatus | None,  # type: ignore[valid-type]
            strawberry.argument(description="COMPLETED or FAILED to end the job."),
        ] = None,
    ) -> Job:
        job = await info.context.jobs.update_progress(id, progress, status)
        return Job.from_record(job, info.context.public_url)
