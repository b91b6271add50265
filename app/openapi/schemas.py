"""The OpenAPI document's schemas: the request, response, page, patch and error
objects, with the keys app.rest reads and writes and app.jobs.model's limits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app import rest
from app.jobs.model import MAX_INPUTS, MAX_PROGRESS, JobStatus

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


def schemas() -> dict[str, Any]:
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
        "inputs": inputs,
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
            **object_schema(request_fields, required=rest.REQUEST_KEYS),
            "examples": [EXAMPLE_REQUEST],
        },
        "Job": object_schema(job, required=tuple(job)),
        "JobPage": object_schema(
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
            **object_schema(patch_fields, required=()),
            "minProperties": 1,
            "description": "Progress, status or both; sent together they apply together.",
        },
        "Error": object_schema(
            {
                "error": object_schema(
                    {"code": {"type": "string"}, "message": {"type": "string"}},
                    required=("code", "message"),
                )
            },
            required=("error",),
        ),
    }


def object_schema(properties: dict[str, Any], required: Iterable[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }
