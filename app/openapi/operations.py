"""What the OpenAPI document says of each REST operation beyond its path and
method: summary, scope, parameters, and the errors it may answer (app.errors
classes: their statuses and codes are read from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import rest
from app.auth import READ, REPORT, WRITE
from app.errors import (
    AppError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    MalformedBody,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from app.jobs import idempotency
from app.jobs.model import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# Answered before any route runs (app.middleware.BodyLimit), to a request with a body.
BODY_REFUSALS = {
    413: ("PAYLOAD_TOO_LARGE", "The body is larger than MAX_BODY_BYTES."),
    408: ("REQUEST_TIMEOUT", "The body did not arrive within REQUEST_BODY_TIMEOUT."),
}
# Every route may answer these: the token comes first, the database may be away.
ALWAYS: tuple[type[AppError], ...] = (Unauthenticated, Forbidden, Unavailable)
BODY_ERRORS: tuple[type[AppError], ...] = (MalformedBody, UnsupportedMediaType, InvalidInput)

ERROR_WHEN: dict[type[AppError], str] = {
    InvalidInput: "A value is malformed or out of range; the message names the field.",
    MalformedBody: "The body is not JSON (or not UTF-8).",
    UnsupportedMediaType: "The body is not declared `application/json` (or `application/*+json`).",
    JobNotFound: "No such job for this tenant (another tenant's job is not found either).",
    InvalidTransition: "The state rules forbid this change: the job is finished or "
    "deleted, or the progress is lower than before.",
    Unauthenticated: "No bearer token, or one that is malformed, expired or badly signed.",
    Forbidden: "The token lacks the scope this operation needs.",
    IdempotencyKeyReused: f"The `{idempotency.HEADER}` already created a job from a "
    "different request; nothing was created.",
    Unavailable: "The database cannot be reached right now; retry after `Retry-After` seconds.",
}


@dataclass(frozen=True)
class Operation:
    """What the document says of one route beyond its path and method."""

    operation_id: str
    summary: str
    description: str
    scope: str
    errors: tuple[type[AppError], ...]
    success: int = 200
    request: str | None = None
    parameters: tuple[dict[str, Any], ...] = ()
    response: str = "Job"


def uuid_parameter(name: str, where: str, description: str) -> dict[str, Any]:
    parameter = {"name": name, "in": where, "description": description}
    return {
        **parameter,
        "required": where == "path",
        "schema": {"type": "string", "format": "uuid"},
    }


JOB_ID = uuid_parameter("id", "path", "The job's id.")
IDEMPOTENCY_KEY = {
    "name": idempotency.HEADER,
    "in": "header",
    "description": "Makes the create safe to retry: the same key with the same request "
    "answers the job it first created (201, the same body and `Location`, with "
    f"`{rest.REPLAYED_HEADER}: true`) and creates nothing; with a different request, 409 "
    f"`CONFLICT`. Keys are the tenant's, 1 to {idempotency.MAX_KEY_LENGTH} printable "
    "characters, remembered for IDEMPOTENCY_KEY_TTL seconds (a day by default). Bare "
    '(`abc`) or a quoted string (`"abc"`).',
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH},
}

OPERATIONS: dict[rest.Endpoint, Operation] = {
    rest.create: Operation(
        "createJob",
        "Create a job",
        "A new job is status 0, progress 0. Answers the job, and its `url` in `Location`.",
        WRITE,
        (*BODY_ERRORS, IdempotencyKeyReused),
        success=201,
        request="JobRequest",
        parameters=(IDEMPOTENCY_KEY,),
    ),
    rest.listing: Operation(
        "listJobs",
        "List jobs, newest first",
        "One page of the tenant's jobs, newest first. Deleted jobs are left out unless "
        "`include_deleted=true`. Pass `next_cursor` as `cursor` for the next page; it is "
        "null on the last one.",
        READ,
        (InvalidInput,),
        parameters=(
            {
                "name": "status",
                "in": "query",
                "description": "Only jobs with this status code.",
                "schema": {"$ref": "#/components/schemas/JobStatus"},
            },
            {
                "name": "limit",
                "in": "query",
                "description": f"Jobs per page, 1 to {MAX_PAGE_SIZE}.",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PAGE_SIZE,
                    "default": DEFAULT_PAGE_SIZE,
                },
            },
            {
                "name": "cursor",
                "in": "query",
                "description": "The `next_cursor` of the page before (opaque; only this "
                "tenant's cursors are accepted).",
                "schema": {"type": "string"},
            },
            uuid_parameter("video", "query", "Only jobs making this video."),
            uuid_parameter("profile", "query", "Only jobs with this encoding profile."),
            {
                "name": "include_deleted",
                "in": "query",
                "description": "Also list deleted jobs (`deleted_at` set).",
                "schema": {"type": "boolean", "default": False},
            },
        ),
        response="JobPage",
    ),
    rest.read: Operation(
        "getJob",
        "Read a job",
        "A deleted job is still answered, with `deleted_at` set.",
        READ,
        (InvalidInput, JobNotFound),
        parameters=(JOB_ID,),
    ),
    rest.delete: Operation(
        "deleteJob",
        "Delete a job",
        "A soft delete: sets `deleted_at`. Deleting again answers the job unchanged.",
        WRITE,
        (InvalidInput, JobNotFound),
        parameters=(JOB_ID,),
    ),
    rest.patch: Operation(
        "updateJobProgress",
        "Report a job's progress or status (encoder workers)",
        "Progress never goes down; only a job in progress (status 0), not deleted, can "
        "change, to status 1 or 10. Status 1 sets progress to 100; status 10 keeps the "
        "progress reached (the one sent, if any).",
        REPORT,
        (*BODY_ERRORS, JobNotFound, InvalidTransition),
        request="JobPatch",
        parameters=(JOB_ID,),
    ),
}
