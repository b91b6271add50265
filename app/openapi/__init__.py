"""The OpenAPI 3.1 document of the REST API, served at GET /encoding/openapi.json.

Built from the code's own definitions, so it cannot drift from what the routes do:
paths and methods from `app.rest.RESOURCES` (a handler missing from
`operations.OPERATIONS` stops the app at start), request keys from `app.rest`,
limits and status codes from `app.jobs.model` (`schemas.py`), scopes from
`app.auth`, and each error answer's status and codes from the `app.errors`
classes the operation may raise (`operations.py`).
tests/test_openapi.py holds the rest against the running server: every answer
conforms (schemathesis), every documented error is produced and matches, every
documented scope is the one the route needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import rest
from app.auth import SCOPES
from app.errors import AppError, Unauthenticated, Unavailable
from app.openapi.operations import ALWAYS, BODY_REFUSALS, ERROR_WHEN, JOB_ID, OPERATIONS, Operation
from app.openapi.schemas import schemas
from app.settings import Settings
from app.urls import public_url

PATH = "/encoding/openapi.json"
SECURITY_SCHEME = "bearerAuth"
# Documents kept ready, one per address served (PUBLIC_URL unset: the address each request reached).
MAX_CACHED_BODIES = 16


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
            "Location": _header("The job's `url`.", {"type": "string", "format": "uri"}),
            rest.REPLAYED_HEADER: {
                "description": "`true` when an `Idempotency-Key` had already created this "
                "job: the answer is the first one again.",
                "required": False,
                "schema": {"type": "string", "enum": ["true"]},
            },
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


def document(base_url: str) -> dict[str, Any]:
    """The whole document; `servers` is `base_url`, the base of every job's `url`."""
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
        "servers": [{"url": base_url}],
        "security": [{SECURITY_SCHEME: []}],
        "tags": [{"name": "jobs", "description": "Video-encoding jobs."}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
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


def route(settings: Settings) -> Route:
    """GET /encoding/openapi.json: no token needed, as a client generator fetches it.
    `servers` names PUBLIC_URL or, unset, the address the request reached (app.urls)."""
    bodies: dict[str, bytes] = {}

    async def openapi(request: Request) -> Response:
        base_url = public_url(settings, request.scope)
        body = bodies.get(base_url)
        if body is None:
            body = bytes(JSONResponse(document(base_url)).body)
            if len(bodies) < MAX_CACHED_BODIES:  # one per address served: a handful
                bodies[base_url] = body
        return Response(body, media_type="application/json")

    return Route(PATH, openapi, methods=["GET"])
