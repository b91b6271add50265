"""The job record, its status codes and the rules on its input values.

The state rules for changes (monotonic progress, terminal states) are applied
atomically by `app.jobs.store.update_progress`; the checks that need no stored
state live here so that GraphQL and REST share them.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.errors import InvalidInput

MAX_INPUTS = 100
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_PROGRESS = 100


class JobStatus(enum.IntEnum):
    IN_PROGRESS = 0
    COMPLETED = 1
    FAILED = 10

    @property
    def is_terminal(self) -> bool:
        return self is not JobStatus.IN_PROGRESS


@dataclass(frozen=True, slots=True)
class Job:
    id: uuid.UUID
    tenant: str
    status: JobStatus
    progress: int
    profile: uuid.UUID
    video: uuid.UUID
    inputs: tuple[uuid.UUID, ...]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    # Insertion order: the key of newest-first keyset pagination, never shown.
    seq: int

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal or self.deleted_at is not None

    def url(self, public_url: str) -> str:
        """Its REST address, which GET answers with the job (the contract's `url`)."""
        return f"{public_url}/encoding/jobs/{self.id}"

    def as_created(self) -> Job:
        """The job as its create answered it: every new job starts IN_PROGRESS at 0,
        updated when created, not deleted (`create_job`). A replayed create answers
        this, the same as the first answer, whatever happened to the job since."""
        return replace(
            self,
            status=JobStatus.IN_PROGRESS,
            progress=0,
            updated_at=self.created_at,
            deleted_at=None,
        )

    @property
    def order_key(self) -> tuple[datetime, bool, bool, int]:
        """Where this state stands in its job's history.

        The state rules only ever move each part forward (updated_at never goes back,
        a job ends once and is deleted once, progress never goes down), so a later
        state never has a smaller key, and two states with equal keys look the same.
        """
        return (
            self.updated_at,
            self.deleted_at is not None,
            self.status.is_terminal,
            self.progress,
        )


# Where a state stands in its job's history (app.jobs.events).
OrderKey = tuple[datetime, bool, bool, int]


@dataclass(frozen=True, slots=True)
class JobChange:
    """A job's latest change as the change feed reads it: enough to tell whether a
    process has passed it on, not the job itself."""

    id: uuid.UUID
    tenant: str
    # Its change number (jobs.change_seq).
    seq: int
    key: OrderKey


@dataclass(frozen=True, slots=True)
class NewJob:
    inputs: tuple[uuid.UUID, ...]
    profile: uuid.UUID
    video: uuid.UUID


@dataclass(frozen=True, slots=True)
class Created:
    """What a create with an idempotency key gave: the job, and whether an earlier
    request with that key had created it (then nothing new was stored)."""

    job: Job
    replayed: bool


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: JobStatus | None = None
    video: uuid.UUID | None = None
    profile: uuid.UUID | None = None
    include_deleted: bool = False

    def matches(self, job: Job) -> bool:
        return (
            (self.status is None or job.status == self.status)
            and (self.video is None or job.video == self.video)
            and (self.profile is None or job.profile == self.profile)
            and (self.include_deleted or job.deleted_at is None)
        )

    def concerns(self, job: Job) -> bool:
        """Whether a `jobUpdates` subscriber with this filter hears of this change.

        A job is sent when it matches after the change; a deletion also goes to those it
        matched before, so lists can drop it (deleting changes nothing else).
        """
        if self.matches(job):
            return True
        return job.deleted_at is not None and self.matches(replace(job, deleted_at=None))


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Job]
    has_next: bool


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """UTC, ISO 8601, always with microseconds and a Z suffix (the documented format)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_document(job: Job, public_url: str) -> dict[str, object]:
    """The documented REST response object, exactly these keys (REST answers and
    webhook payloads alike)."""
    return {
        "id": str(job.id),
        "url": job.url(public_url),
        "status": int(job.status),
        "progress": job.progress,
        "profile": str(job.profile),
        "video": str(job.video),
        "inputs": [str(value) for value in job.inputs],
        "created_at": format_timestamp(job.created_at),
        "updated_at": format_timestamp(job.updated_at),
        "deleted_at": format_timestamp(job.deleted_at) if job.deleted_at else None,
    }


def parse_uuid(field: str, value: object) -> uuid.UUID:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a UUID string, got {_kind(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(field, f"{quoted(value)} is not a valid UUID") from None


def new_job(inputs: Sequence[uuid.UUID], profile: uuid.UUID, video: uuid.UUID) -> NewJob:
    if not inputs:
        raise InvalidInput("inputs", "must hold at least one input UUID")
    if len(inputs) > MAX_INPUTS:
        raise InvalidInput("inputs", f"holds {len(inputs)} entries; at most {MAX_INPUTS}")
    seen: set[uuid.UUID] = set()
    for index, value in enumerate(inputs):
        if value in seen:
            raise InvalidInput(f"inputs[{index}]", f"{value} is listed twice")
        seen.add(value)
    return NewJob(inputs=tuple(inputs), profile=profile, video=video)


def check_progress(progress: int | None, field: str = "progress") -> None:
    if progress is not None and not 0 <= progress <= MAX_PROGRESS:
        raise InvalidInput(field, f"must be between 0 and {MAX_PROGRESS}, got {progress}")


def check_page_size(first: int, field: str = "first") -> None:
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise InvalidInput(field, f"must be between 1 and {MAX_PAGE_SIZE}, got {first}")


def quoted(value: str, limit: int = 60) -> str:
    """`value` for an error message: repr, cut at `limit` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _kind(value: object) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
