"""Live jobs (over WebSocket or HTTP): one job's progress, or every change the caller may see."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.types import Job, JobFilter
from app.jobs.mailbox import JobStream


class _AsJobs:
    """A `JobStream` of domain jobs, as GraphQL `Job`s; closing it closes the stream."""

    def __init__(self, stream: JobStream, public_url: str) -> None:
        self._stream = stream
        self._public_url = public_url

    def __aiter__(self) -> _AsJobs:
        return self

    async def __anext__(self) -> Job:
        return Job.from_record(await self._stream.__anext__(), self._public_url)

    async def aclose(self) -> None:
        await self._stream.aclose()


@strawberry.type(
    description="Live updates, over WebSocket (graphql-transport-ws or graphql-ws) or HTTP "
    "(graphql-sse, or Apollo multipart subscriptions)."
)
class Subscription:
    # Plain coroutines returning a stream (not async generators): an unknown job is
    # refused before the stream starts, so the client gets a protocol `error` message.
    @strawberry.subscription(
        description="One job: its current state first, then every change, in order. "
        "Completes right after the job is COMPLETED, FAILED or deleted (at once for a "
        "job that has already ended). NOT_FOUND for an unknown job."
    )
    async def job_progress(
        self,
        info: Info,
        id: Annotated[uuid.UUID, strawberry.argument(description="The job's id.")],
    ) -> AsyncIterator[Job]:
        stream = await info.context.jobs.follow(id)
        return _AsJobs(stream, info.context.public_url)

    @strawberry.subscription(
        description="Every job created or changed from now on that matches the filter "
        "after the change; a deletion also goes to subscribers whose filter matched "
        "the job before it, so lists can drop it."
    )
    async def job_updates(
        self,
        info: Info,
        filter: Annotated[
            JobFilter | None,
            strawberry.argument(description="Only matching jobs; without it, every live job."),
        ] = None,
    ) -> AsyncIterator[Job]:
        stream = info.context.jobs.watch(JobFilter.to_model(filter))
        return _AsJobs(stream, info.context.public_url)
