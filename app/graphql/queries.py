"""Read jobs: one by id, or a newest-first page."""

from __future__ import annotations

import uuid
from typing import Annotated

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from app.graphql.context import Info
from app.graphql.types import Job, JobConnection, JobFilter
from app.graphql.webhooks import WebhookQueries
from app.jobs import model


@strawberry.type(description="Read encoding jobs.")
class Query(WebhookQueries):
    @strawberry.field(
        description="One job by id; null if there is none. "
        "A deleted job is returned with `deletedAt` set."
    )
    async def job(
        self,
        info: Info,
        id: Annotated[uuid.UUID, strawberry.argument(description="The job's id.")],
    ) -> Job | None:
        found = await info.context.jobs.get(id)
        return Job.from_record(found, info.context.public_url) if found else None

    @strawberry.field(description="Jobs newest first, a page at a time (Relay-style cursors).")
    async def jobs(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="Page size, 1..100 (null: 20).")
        ] = model.DEFAULT_PAGE_SIZE,
        after: Annotated[
            str | None,
            strawberry.argument(description="Start after this cursor (a previous `endCursor`)."),
        ] = None,
        filter: Annotated[
            JobFilter | None,
            strawberry.argument(
                description="Only matching jobs; without it deleted jobs are hidden."
            ),
        ] = None,
    ) -> JobConnection:
        first = model.DEFAULT_PAGE_SIZE if first is None else first
        model.check_page_size(first)
        jobs = info.context.jobs
        after_seq = jobs.position(after, "after") if after is not None else None
        job_filter = JobFilter.to_model(filter)
        page = await jobs.list(job_filter, first, after_seq)
        return JobConnection.from_page(
            page,
            job_filter,
            info.context.public_url,
            jobs,
            with_cursors=asks_for_cursors(info),
        )


# The fields whose values are cursors: `JobEdge.cursor`, `PageInfo.endCursor` / `startCursor`.
CURSOR_FIELDS = frozenset({"cursor", "endCursor", "startCursor"})


def asks_for_cursors(info: Info) -> bool:
    """Whether the `jobs` field's selection reads a cursor anywhere (fragments included:
    strawberry's `selected_fields` expands them).

    A cursor is sealed (AES-SIV, app/jobs/cursors.py): a page of 50 jobs cost 50
    encryptions, ~10% of its CPU, for a query that reads none.
    """
    stack: list[Selection] = list(info.selected_fields)
    while stack:
        selection = stack.pop()
        if isinstance(selection, SelectedField) and selection.name in CURSOR_FIELDS:
            return True
        stack.extend(selection.selections)
    return False
