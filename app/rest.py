"""The documented REST routes under /encoding/jobs: same store, same rules."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import media, metrics
from app.errors import (
    AppError,
    InvalidInput,
    JobNotFound,
    MalformedBody,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from app.jobs import model
from app.jobs.model import Job, JobStatus, format_timestamp, parse_uuid
from app.jobs.service import Jobs
from app.responses import error_response

REQUEST_KEYS = ("inputs", "profile", "video")
PATCH_KEYS = ("progress", "status")
# What a 503 (UNAVAILABLE) tells clients to wait before trying again.
RETRY_AFTER_SECONDS = 1


def job_response(job: Job, public_url: str) -> dict[str, Any]:
    """The documented response object, exactly these keys."""
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


async def app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    response = error_response(exc.http_status, exc.code, exc.message)
    if isinstance(exc, Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="jobs"'
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


def _status(field: str, value: object) -> JobStatus:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be a status code: 0, 1 or 10")
    try:
        return JobStatus(value)
    except ValueError:
        raise InvalidInput(field, f"{value} is not a status code; expected 0, 1 or 10") from None


def _int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be an integer")
    return value


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
    job = await jobs.create(new)
    public_url = request.app.state.settings.public_url
    return JSONResponse(
        job_response(job, public_url),
        status_code=201,
        headers={"Location": job.url(public_url)},
    )


async def read(request: Request) -> Response:
    jobs = _jobs(request)
    job_id = _path_id(request)
    job = await jobs.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return JSONResponse(job_response(job, request.app.state.settings.public_url))


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
    public_url = request.app.state.settings.public_url
    return JSONResponse(
        {
            "jobs": [job_response(job, public_url) for job in page.jobs],
            "next_cursor": jobs.cursor(page.jobs[-1]) if page.has_next else None,
        }
    )


async def delete(request: Request) -> Response:
    jobs = _jobs(request)
    job = await jobs.delete(_path_id(request))
    return JSONResponse(job_response(job, request.app.state.settings.public_url))


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
    return JSONResponse(job_response(job, request.app.state.settings.public_url))


def _jobs(request: Request) -> Jobs:
    """The caller's jobs; first in every route, so a bad token is 401 whatever else is wrong."""
    caller = request.app.state.verifier.verify(request.headers.get("authorization"))
    state = request.state
    return Jobs.for_caller(state.database, state.events, request.app.state.cursors, caller)


routes = [
    Route("/encoding/jobs", create, methods=["POST"]),
    Route("/encoding/jobs", listing, methods=["GET"]),
    Route("/encoding/jobs/{id}", read, methods=["GET"]),
    Route("/encoding/jobs/{id}", delete, methods=["DELETE"]),
    Route("/encoding/jobs/{id}", patch, methods=["PATCH"]),
]
