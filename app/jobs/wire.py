"""A job change as it travels through the broker: the whole job, as compact JSON."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from app.jobs.model import Job, JobStatus


# A job at its largest (100 inputs, a 200-character tenant) encodes to about 4.6 KB,
# under PostgreSQL's 8,000-byte NOTIFY limit. Carrying the whole job spares every
# process a database read per event.
def encode(job: Job, trace: dict[str, str] | None = None) -> str:
    """`trace`: the publisher's trace context (tracing on), which receivers continue."""
    fields: dict[str, Any] = {
        "id": str(job.id),
        "tenant": job.tenant,
        "status": int(job.status),
        "progress": job.progress,
        "profile": str(job.profile),
        "video": str(job.video),
        "inputs": [str(value) for value in job.inputs],
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "deleted_at": job.deleted_at.isoformat() if job.deleted_at else None,
        "seq": job.seq,
    }
    if trace:
        fields["trace"] = trace
    return json.dumps(fields, separators=(",", ":"))


def decode(fields: dict[str, Any]) -> Job:
    deleted_at = fields["deleted_at"]
    return Job(
        id=uuid.UUID(fields["id"]),
        tenant=fields["tenant"],
        status=JobStatus(fields["status"]),
        progress=int(fields["progress"]),
        profile=uuid.UUID(fields["profile"]),
        video=uuid.UUID(fields["video"]),
        inputs=tuple(uuid.UUID(value) for value in fields["inputs"]),
        created_at=datetime.fromisoformat(fields["created_at"]),
        updated_at=datetime.fromisoformat(fields["updated_at"]),
        deleted_at=datetime.fromisoformat(deleted_at) if deleted_at else None,
        seq=int(fields["seq"]),
    )
