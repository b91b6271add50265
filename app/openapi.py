"""The OpenAPI 3.1 document of the REST API, served at GET /encoding/openapi.json.

Built from the code's own definitions, so it cannot drift from what the routes do:
paths and methods from `app.rest.RESOURCES` (a handler without a description
here fails the build), request keys from `app.rest`, limits and status codes from
`app.jobs.model`, scopes from `app.auth`, and each error answer's status and
codes from the `app.errors` classes the operation may raise.
tests/test_openapi.py holds the rest against the running server: every answer
conforms (schemathesis), every documented error is produced and matches, every
documented scope is the one the route needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import rest
from app.auth import READ, REPORT, SCOPES, WRITE
from app.errors import (
    AppError,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    MalformedBody,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from app.jobs.model import DEFAULT_PAGE_SIZE, MAX_INPUTS, MAX_PAGE_SIZE, MAX_PROGRESS, JobStatus

PATH = "/encoding/openapi.json"
SECURITY_SCHEME = "bearerAuth"

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
    InvalidTransition: "The state rules forbid this change (a finished or deleted job, "
    "progress lower than before, a status other than 1 or 10).",
    Unauthenticated: "No bearer token, or one that is malformed, expired or badly signed.",
    Forbidden: "The token lacks the scope this operation needs.",
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


def _uuid_parameter(name: str, where: str, description: str) -> dict[str, Any]:
    parameter = {"name": name, "in": where, "description": description}
    return {
        **parameter,
        "required": where == "path",
        "schema": {"type": "string", "format": "uuid"},
    }


JOB_ID = _uuid_parameter("id", "path", "The job's id.")

OPERATIONS: dict[rest.Endpoint, Operation] = {
    rest.create: Operation(
        "createJob",
        "Create a job",
        "A new job is status 0, progress 0. Answers the job, and its `url` in `Location`.",
        WRITE,
        BODY_ERRORS,
        success=201,
        request="JobRequest",
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
            _uuid_parameter("video", "query", "Only jobs making this video."),
            _uuid_parameter("profile", "query", "Only jobs with this encoding profile."),
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

UUID = {"type": "string", "format": "uuid"}
TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "description": "UTC, ISO 8601 with microseconds and a `Z` suffix.",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
}
PROGRESS = {"type": "integer", "minimum": 0, "maximum": MAX_PROGRESS}
EXAMPLE_REQUEST = {
    "inputs": ["340dd145-c06b-4d72-a8cc-0f6b270eb065"],
    "profile": "2876db3d-ed16-4cf2-af82-98a383009e3c",
    "video": "62dcb602-e95b-483c-badf-9497914717a5",
}


def _schemas() -> dict[str, Any]:
    inputs = {
        "type": "array",
        "items": UUID,
        "minItems": 1,
        "maxItems": MAX_INPUTS,
        "uniqueItems": True,
        "description": "The job's inputs, in order; no duplicates.",
    }
    request_fields = {"inputs": inputs, "profile": UUID, "video": UUID}
    assert tuple(request_fields) == rest.REQUEST_KEYS
    job = {
        "id": UUID,
        "url": {
            "type": "string",
            "format": "uri",
            "description": "`{PUBLIC_URL}/encoding/jobs/{id}`.",
        },
        "status": {"$ref": "#/components/schemas/JobStatus"},
        "progress": PROGRESS,
        "profile": UUID,
        "video": UUID,
        "inputs": {**inputs, "uniqueItems": True},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "deleted_at": {**TIMESTAMP, "type": ["string", "null"]},
    }
    patch_fields = {"progress": PROGRESS, "status": {"$ref": "#/components/schemas/JobStatus"}}
    assert tuple(patch_fields) == rest.PATCH_KEYS
    statuses = [int(status) for status in JobStatus]
    return {
        "JobStatus": {
            "type": "integer",
            "enum": statuses,
            "description": "0 in progress, 1 completed successfully, 10 failed.",
        },
        "JobRequest": {
            **_object(request_fields, required=rest.REQUEST_KEYS),
            "examples": [EXAMPLE_REQUEST],
        },
        "Job": _object(job, required=tuple(job)),
        "JobPage": _object(
            {
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "The `cursor` of the next page; null on the last page.",
                },
            },
            required=("jobs", "next_cursor"),
        ),
        "JobPatch": {
            **_object(patch_fields, required=()),
            "minProperties": 1,
            "description": "Progress, status or both; sent together they apply together.",
        },
        "Error": _object(
            {
                "error": _object(
                    {"code": {"type": "string"}, "message": {"type": "string"}},
                    required=("code", "message"),
                )
            },
            required=("error",),
        ),
    }


def _object(properties: dict[str, Any], required: Iterable[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _error(description: str, codes: Iterable[str], headers: dict[str, Any] | None = None) -> Any:
    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"properties": {"error": {"properties": {"code": {"enum": sorted(set(codes))}}}}},
        ]
    }
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _error_headers(errors: Iterable[type[AppError]]) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    for error in errors:
        if error is Unauthenticated:
            headers["WWW-Authenticate"] = _header('`Bearer realm="jobs"`.')
        elif error is Unavailable:
            headers["Retry-After"] = _header(
                "Seconds to wait before retrying.", {"type": "string", "pattern": "^[0-9]+$"}
            )
    return headers


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {
        "description": "The job page." if operation.response == "JobPage" else "The job.",
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{operation.response}"}}
        },
    }
    if operation.success == 201:
        success["headers"] = {
            "Location": _header("The job's `url`.", {"type": "string", "format": "uri"})
        }
    responses[str(operation.success)] = success
    by_status: dict[int, list[type[AppError]]] = defaultdict(list)
    for error in (*operation.errors, *ALWAYS):
        by_status[error.http_status].append(error)
    if operation.request is not None:
        for status, (code, why) in BODY_REFUSALS.items():
            responses[str(status)] = _error(why, [code])
    for status, errors in sorted(by_status.items()):
        description = " Or: ".join(ERROR_WHEN[error] for error in errors)
        codes = [error.code for error in errors]
        responses[str(status)] = _error(description, codes, _error_headers(errors))
    responses["default"] = {
        "description": "Any other error, in the same shape (e.g. 405 for a method the path "
        "does not have, with `Allow`).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    return dict(sorted(responses.items()))


def _operation(operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": f"{operation.description} Needs the `{operation.scope}` scope.",
        "tags": ["jobs"],
        "security": [{SECURITY_SCHEME: [operation.scope]}],
    }
    if operation.parameters:
        document["parameters"] = list(operation.parameters)
    if operation.request is not None:
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{operation.request}"}
                }
            },
        }
    document["responses"] = _responses(operation)
    if operation.success == 201:
        # Where the created job can be read, changed and deleted: SDKs and
        # stateful testers follow these.
        document["responses"]["201"]["links"] = {
            target.operation_id: {
                "operationId": target.operation_id,
                "parameters": {"id": "$response.body#/id"},
            }
            for target in OPERATIONS.values()
            if JOB_ID in target.parameters
        }
    return document


def document(public_url: str) -> dict[str, Any]:
    """The whole document; `servers` is PUBLIC_URL, the base of every job's `url`."""
    paths = {
        path: {
            method.lower(): _operation(OPERATIONS[handler]) for method, handler in methods.items()
        }
        for path, methods in rest.RESOURCES.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Jobs gateway REST API",
            "version": "1",
            "description": "Video-encoding jobs: create them, page through them, follow and "
            "report their progress. The same jobs and rules as the GraphQL API at /graphql. "
            'Errors are `{"error": {"code", "message"}}`; the message names the field.',
        },
        "servers": [{"url": public_url}],
        "security": [{SECURITY_SCHEME: []}],
        "tags": [{"name": "jobs", "description": "Video-encoding jobs."}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 JWT signed with AUTH_JWT_SECRET; claims `sub`, "
                    f"`tenant`, `scope` (space separated, of {', '.join(SCOPES)}), `exp`. "
                    "A server without AUTH_JWT_SECRET (open mode, loopback only) needs none.",
                }
            },
        },
    }


def route(public_url: str) -> Route:
    """GET /encoding/openapi.json: no token needed, as a client generator fetches it."""
    body = JSONResponse(document(public_url)).body

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route(PATH, openapi, methods=["GET"])
