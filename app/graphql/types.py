"""GraphQL types, each converted from a domain object by a small classmethod."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from app.graphql.context import Info
from app.jobs import model
from app.jobs.model import format_timestamp
from app.jobs.service import Jobs

JobStatus = strawberry.enum(
    model.JobStatus,
    name="JobStatus",
    description="Where a job stands. Each value has a numeric code, also given by `Job.statusCode`.",
)
for _value, _text in zip(
    JobStatus.__strawberry_definition__.values,  # type: ignore[attr-defined]
    (
        "Being encoded (code 0). The only state in which a job changes.",
        "Encoded successfully (code 1). Final.",
        "Encoding failed (code 10). Final; progress stays where it was.",
    ),
    strict=True,
):
    _value.description = _text


def _parse_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 string")
    return datetime.fromisoformat(value)


DateTime = strawberry.scalar(
    name="DateTime",
    description="A point in time: ISO 8601 in UTC with microseconds, e.g. 2016-03-03T13:36:26.012751Z.",
    serialize=format_timestamp,
    parse_value=_parse_datetime,
)

UUID = strawberry.scalar(
    name="UUID",
    description="A UUID in its canonical text form, e.g. 340dd145-c06b-4d72-a8cc-0f6b270eb065.",
    serialize=str,
    parse_value=lambda value: _parse_uuid(value),
)


def _parse_uuid(value: object) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValueError("not a UUID")


SCALAR_OVERRIDES = {datetime: DateTime, uuid.UUID: UUID}


@strawberry.type(
    description="An encoding job: turns input files into a video with an encoding profile."
)
class Job:
    id: uuid.UUID = strawberry.field(description="The job's id.")
    url: str = strawberry.field(
        description="The job's REST address, `{PUBLIC_URL}/encoding/jobs/{id}`; GET returns it."
    )
    status: JobStatus = strawberry.field(description="Where the job stands.")  # type: ignore[valid-type]
    status_code: int = strawberry.field(
        description="The raw status code: 0 in progress, 1 completed, 10 failed."
    )
    progress: int = strawberry.field(
        description="Percent encoded, 0..100. Never goes down; 100 once COMPLETED."
    )
    profile: uuid.UUID = strawberry.field(description="The encoding profile used.")
    video: uuid.UUID = strawberry.field(description="The video the job produces.")
    inputs: list[uuid.UUID] = strawberry.field(
        description="The input files, in the order given at creation."
    )
    created_at: datetime = strawberry.field(description="When the job was created.")
    updated_at: datetime = strawberry.field(description="When the job last changed.")
    deleted_at: datetime | None = strawberry.field(
        description="When the job was deleted; null while it is not."
    )

    @classmethod
    def from_record(cls, job: model.Job, public_url: str) -> Job:
        return cls(
            id=job.id,
            url=job.url(public_url),
            status=job.status,
            status_code=int(job.status),
            progress=job.progress,
            profile=job.profile,
            video=job.video,
            inputs=list(job.inputs),
            created_at=job.created_at,
            updated_at=job.updated_at,
            deleted_at=job.deleted_at,
        )


@strawberry.input(description="A new job: what to encode, how, and into which video.")
class CreateJobInput:
    inputs: list[uuid.UUID] = strawberry.field(
        description="Input file UUIDs, 1 to 100, no duplicates; their order is kept."
    )
    profile: uuid.UUID = strawberry.field(description="The encoding profile's UUID.")
    video: uuid.UUID = strawberry.field(description="The target video's UUID.")

    def to_new_job(self) -> model.NewJob:
        return model.new_job(self.inputs, profile=self.profile, video=self.video)


@strawberry.input(description="Narrows a job listing or subscription; all given fields must match.")
class JobFilter:
    status: JobStatus | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Only jobs in this status."
    )
    video: uuid.UUID | None = strawberry.field(
        default=None, description="Only jobs for this video."
    )
    profile: uuid.UUID | None = strawberry.field(
        default=None, description="Only jobs using this profile."
    )
    include_deleted: bool = strawberry.field(
        default=False, description="Also list deleted jobs (hidden by default)."
    )

    @staticmethod
    def to_model(value: JobFilter | None) -> model.JobFilter:
        if value is None:
            return model.JobFilter()
        return model.JobFilter(
            status=value.status,
            video=value.video,
            profile=value.profile,
            include_deleted=value.include_deleted,
        )


@strawberry.type(description="Where a page of a connection ends, and whether more follow.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more jobs follow `endCursor`.")
    end_cursor: str | None = strawberry.field(
        description="The last edge's cursor: pass it as `after` for the next page; null when empty."
    )
    has_previous_page: bool = strawberry.field(
        description="Always false: this connection pages forward only (Relay convention)."
    )
    start_cursor: str | None = strawberry.field(
        description="The first edge's cursor; null when the page is empty."
    )


@strawberry.type(description="A job in a connection, with its position.")
class JobEdge:
    cursor: str = strawberry.field(description="Opaque position of this job: pass as `after`.")
    node: Job = strawberry.field(description="The job.")


@strawberry.type(description="A page of jobs, newest first.")
class JobConnection:
    edges: list[JobEdge] = strawberry.field(description="The jobs of this page, newest first.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")
    job_filter: strawberry.Private[model.JobFilter]

    @strawberry.field(
        description="How many jobs match the filter in all pages. Counted on request."
    )
    async def total_count(self, info: Info) -> int:
        return await info.context.jobs.count(self.job_filter)

    @classmethod
    def from_page(
        cls,
        page: model.Page,
        job_filter: model.JobFilter,
        public_url: str,
        jobs: Jobs,
        with_cursors: bool = True,
    ) -> JobConnection:
        """`with_cursors=False` (no cursor is read: `asks_for_cursors`) leaves them
        empty rather than sealing one per edge."""
        edges = [
            JobEdge(
                cursor=jobs.cursor(job) if with_cursors else "",
                node=Job.from_record(job, public_url),
            )
            for job in page.jobs
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next,
                end_cursor=edges[-1].cursor if edges else None,
                has_previous_page=False,
                start_cursor=edges[0].cursor if edges else None,
            ),
            job_filter=job_filter,
        )
