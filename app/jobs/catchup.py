"""Catching this process's subscribers up after a broker outage, from the database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from app.jobs.mailbox import Listener
from app.jobs.model import Job, JobChange

# After a broker outage, jobs changed this long before the last moment it was known
# to deliver are re-read too: other processes' clocks (updated_at) may be behind ours.
CATCH_UP_MARGIN = timedelta(seconds=30)
# Most changed jobs one tenant's `jobUpdates` subscribers are caught up with; past
# that they are told to subscribe again (and reload), as when they fall behind.
CATCH_UP_LIMIT = 500


class CurrentStates(Protocol):
    """Where JobEvents reads jobs' current states (any tenant) to catch up after an outage."""

    async def by_id(self, job_ids: Collection[uuid.UUID]) -> list[Job]: ...

    async def changed_since(self, tenant: str, since: datetime, limit: int) -> list[Job]:
        """The tenant's jobs (deleted ones too) updated at or after `since`, oldest first."""
        ...

    # The change feed's (app.jobs.changes.ChangeSource).
    async def last_change(self) -> int: ...

    async def changes_after(self, after: int, limit: int) -> list[JobChange]: ...

    @property
    def commits_out_of_order(self) -> bool:
        """Whether changes may commit in another order than they are numbered."""
        ...


async def catch_up_subscribers(
    states: CurrentStates,
    since: datetime,
    by_job: Mapping[uuid.UUID, object],
    by_tenant: Mapping[str, Collection[Listener]],
    dispatch: Callable[[Job], None],
) -> None:
    """After a broker outage, the events this process missed: for each job followed
    here its current state (dispatch drops states already passed on), and for
    `jobUpdates`, every job of the tenant changed meanwhile."""
    followed = list(by_job)
    if followed:
        for job in await states.by_id(followed):
            dispatch(job)
    for tenant in list(by_tenant):
        changed = await states.changed_since(tenant, since - CATCH_UP_MARGIN, CATCH_UP_LIMIT + 1)
        if len(changed) > CATCH_UP_LIMIT:
            for listener in list(by_tenant.get(tenant, ())):
                listener.interrupt(
                    f"more than {CATCH_UP_LIMIT} jobs changed while the event broker "
                    "was unreachable; subscribe again (and reload what it showed)"
                )
            continue
        for job in changed:
            dispatch(job)
