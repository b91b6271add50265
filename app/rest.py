"""The documented REST routes under /encoding/jobs: same store, same rules."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import media, metrics
from app.auth import challenge
from app.errors import (
    AppError,
    InvalidInput,
    JobNotFound,
    MalformedBody,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from app.jobs import idempotency, model
from app.jobs.model import Job, JobStatus, job_document, parse_uuid
from app.jobs.service import Jobs
from app.responses import error_response
from app.urls import public_url

REQUEST_KEYS = ("inputs", "profile", "video")
PATCH_KEYS = ("progress", "status")
# Set on the answer to a create whose Idempotency-Key had already created the job.
REPLAYED_HEADER = "Idempotent-Replayed"
# What a 503 (UNAVAILABLE) tells clients to wait before trying again.
RETRY_AFTER_SECONDS = 1

Endpoint = Callable[[Request], Awaitable[Response]]


def job_response(job: Job, base_url: str) -> dict[str, Any]:
    """The documented response object, exactly these keys."""
    return job_document(job, base_url)


async def app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    response = error_response(exc.http_status, exc.code, exc.message)
    if isinstance(exc, Unauthenticated):
        response.headers.update(challenge(exc))
    elif isinstance(exc, Unavailable):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        metrics.UNAVAILABLE.labels("rest").inc()
    return response


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
    response = error_response(exc.status_code, code, exc.detail)
    response.headers.update(exc.headers or {})
    return response


async def _body(request: Request) -> dict[str, Any]:
    problem = media.content_type_problem(request.headers.get("content-type"))
    if problem is not None:
        raise UnsupportedMediaType(problem)
    raw = await request.body()
    try:
        body = media.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedBody(f"body: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    return body


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise InvalidInput(key, f"is not a known field; expected {', '.join(allowed)}")


def _path_id(request: Request) -> uuid.UUID:
    return parse_uuid("id", request.path_params["id"])


def _json_int(value: object) -> int | None:
    """An integer as JSON carries it: `40` or `40.0` (one number to JSON, and to
    GraphQL's Int); None for anything else, `true` included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def _status(field: str, value: object) -> JobStatus:
    code = _json_int(value)
    if code is None:
        raise InvalidInput(field, "must be a status code: 0, 1 or 10")
    try:
        return JobStatus(code)
    except ValueError:
        raise InvalidInput(field, f"{value} is not a status code; expected 0, 1 or 10") from None


def _int(field: str, value: object) -> int:
    number = _json_int(value)
    if number is None:
        raise InvalidInput(field, "must be an integer")
    return number


def _query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(name, f"{raw!r} is not an integer") from None


def _query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise InvalidInput(name, f"{raw!r} is not true or false")


async def create(request: Request) -> Response:
    jobs = _jobs(request)
    body = await _body(request)
    _only(body, REQUEST_KEYS)
    for key in REQUEST_KEYS:
        if key not in body:
            raise InvalidInput(key, "is required")
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise InvalidInput("inputs", "must be a list of UUID strings")
    new = model.new_job(
        [parse_uuid(f"inputs[{index}]", value) for index, value in enumerate(inputs)],
        profile=parse_uuid("profile", body["profile"]),
        video=parse_uuid("video", body["video"]),
    )
    idempotency_key = idempotency.from_header(request.headers.getlist(idempotency.HEADER))
    created = await jobs.create(new, idempotency_key, key_field=idempotency.HEADER_FIELD)
    base_url = _base_url(request)
    headers = {"Location": created.job.url(base_url)}
    if created.replayed:
        # The same answer as the first request's (the job as created), marked as a replay.
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(job_response(created.job, base_url), status_code=201, headers=headers)


async def read(request: Request) -> Response:
    jobs = _jobs(request)
    job_id = _path_id(request)
    job = await jobs.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return JSONResponse(job_response(job, _base_url(request)))


async def listing(request: Request) -> Response:
    jobs = _jobs(request)
    limit = _query_int(request, "limit")
    limit = model.DEFAULT_PAGE_SIZE if limit is None else limit
    model.check_page_size(limit, "limit")
    cursor = request.query_params.get("cursor")
    after = jobs.position(cursor, "cursor") if cursor else None
    status = _query_int(request, "status")
    video = request.query_params.get("video")
    profile = request.query_params.get("profile")
    job_filter = model.JobFilter(
        status=_status("status", status) if status is not None else None,
        video=parse_uuid("video", video) if video is not None else None,
        profile=parse_uuid("profile", profile) if profile is not None else None,
        include_deleted=_query_bool(request, "include_deleted"),
    )
    page = await jobs.list(job_filter, limit, after)
    base_url = _base_url(request)
    return JSONResponse(
        {
            "jobs": [job_response(job, base_url) for job in page.jobs],
            "next_cursor": jobs.cursor(page.jobs[-1]) if page.has_next else None,
        }
    )


async def delete(request: Request) -> Response:
    jobs = _jobs(request)
    job = await jobs.delete(_path_id(request))
    return JSONResponse(job_response(job, _base_url(request)))


async def patch(request: Request) -> Response:
    jobs = _jobs(request)
    job_id = _path_id(request)
    body = await _body(request)
    _only(body, PATCH_KEYS)
    if not body:
        raise InvalidInput("body", "give progress, status or both")
    progress = _int("progress", body["progress"]) if "progress" in body else None
    status = _status("status", body["status"]) if "status" in body else None
    job = await jobs.update_progress(job_id, progress, status)
    return JSONResponse(job_response(job, _base_url(request)))


def _base_url(request: Request) -> str:
    """What each job's `url` starts with: PUBLIC_URL or this request's served address."""
    return public_url(request.app.state.settings, request.scope)


def _jobs(request: Request) -> Jobs:
    """The caller's jobs; first in every route, so a bad token is 401 whatever else is wrong."""
    caller = request.app.state.verifier.verify(request.headers.get("authorization"))
    state = request.state
    app_state = request.app.state
    return Jobs.for_caller(
        state.database,
        state.events,
        app_state.cursors,
        caller,
        key_ttl=app_state.settings.idempotency_key_ttl,
        outbox=app_state.outbox.at(_base_url(request)),
    )


# Each path and what each of its methods runs; app.openapi documents the same table.
RESOURCES: dict[str, dict[str, Endpoint]] = {
    "/encoding/jobs": {"POST": create, "GET": listing},
    "/encoding/jobs/{id}": {"GET": read, "DELETE": delete, "PATCH": patch},
}


def resource(path: str, handlers: dict[str, Endpoint]) -> Route:
    """One route per path, so a method it lacks is 405 with every method it has in
    `Allow` (a route per method would name only the first route's)."""

    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD wherever GET is allowed.
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint, methods=list(handlers))


routes = [resource(path, handlers) for path, handlers in RESOURCES.items()]
