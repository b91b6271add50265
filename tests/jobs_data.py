"""Sample values for requests in tests."""

from __future__ import annotations

import uuid
from typing import Any

PROFILE = "2876db3d-ed16-4cf2-af82-98a383009e3c"
VIDEO = "62dcb602-e95b-483c-badf-9497914717a5"
INPUT = "340dd145-c06b-4d72-a8cc-0f6b270eb065"

JOB_FIELDS = "id url status statusCode progress profile video inputs createdAt updatedAt deletedAt"

CREATE = f"mutation($input: CreateJobInput!) {{ createJob(input: $input) {{ {JOB_FIELDS} }} }}"
REPORT = (
    "mutation($id: UUID!, $progress: Int!, $status: JobStatus) {"
    f" updateJobProgress(id: $id, progress: $progress, status: $status) {{ {JOB_FIELDS} }} }}"
)
DELETE = f"mutation($id: UUID!) {{ deleteJob(id: $id) {{ {JOB_FIELDS} }} }}"
GET = f"query($id: UUID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}"


def request_object(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [INPUT], "profile": PROFILE, "video": VIDEO}
    body.update(overrides)
    return body


def new_uuid() -> str:
    return str(uuid.uuid4())
