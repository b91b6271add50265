"""The fan-out registry of a view, and its groups: one execution per change, one frame per subscriber.

Subscribers that sent the same document and variables from the same tenant form one
`Group`: of one job (`jobProgress`), or of the tenant's changes one filter is
concerned with (`jobUpdates`). The event listener hands the group each change: it
executes the document once, encodes the result once, and writes the `next` frame to
each subscriber's connection. A subscription is a small `Subscriber`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import ExecutionResult, GraphQLError, GraphQLSchema
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments

from app import metrics
from app.graphql.errors import finish_errors
from app.graphql.types import Job
from app.graphql.ws.plan import Plan
from app.jobs import model
from app.jobs.events import JobEvents

if TYPE_CHECKING:
    from app.graphql.ws.fastpath import FastPath

logger = logging.getLogger("app.graphql")

OrderKey = tuple[Any, ...]


class Fanout:
    """The fan-out of one view: its groups, by what they execute."""

    def __init__(
        self,
        schema: strawberry.Schema,
        executor_class: Any,
        encode: Callable[[object], str],
    ) -> None:
        self.schema: GraphQLSchema = schema._schema  # strawberry's graphql-core schema
        # What strawberry converts a resolver's arguments with (`arguments`).
        self._scalars = schema.schema_converter.scalar_registry
        self._config = schema.config
        # Builds an execution of a plan's document (`Executor.build`).
        self.executor_class = executor_class
        # JSON text, as the view encodes every other message.
        self.encode = encode
        self.groups: dict[Hashable, Group] = {}

    def arguments(self, plan: Plan, values: dict[str, Any]) -> dict[str, Any]:
        """The root field's coerced argument values as its resolver gets them (input
        objects as their strawberry types), converted as strawberry converts them."""
        field = plan.field_def.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
        return convert_arguments(
            values, field.arguments, scalar_registry=self._scalars, config=self._config
        )


class Group:
    """The subscribers that asked the same (document, variables, tenant): of one job
    (`jobProgress`), or of the tenant's changes one filter is concerned with (`jobUpdates`).

    The event listener hands it each change (`put`), having checked the filter once for
    the group: executed once, encoded once, written to every subscriber. Sound because a
    `Job`'s fields depend on the job alone, never on who asks.
    """

    __slots__ = (
        "_fanout",
        "_last",
        "events",
        "executions",
        "executor",
        "job_filter",
        "job_id",
        "key",
        "members",
        "plan",
        "public_url",
        "served",
        "tenant",
    )

    def __init__(
        self,
        fanout: Fanout,
        key: Hashable,
        events: JobEvents,
        plan: Plan,
        executor: Any,
        tenant: str,
        job_id: Any,
        public_url: str,
        job_filter: model.JobFilter | None = None,
    ) -> None:
        self._fanout = fanout
        self.key = key
        self.events = events
        self.plan = plan
        self.executor = executor
        self.tenant = tenant
        # One of the two: the job followed, or the filter of the tenant's changes heard.
        self.job_id = job_id
        self.job_filter = job_filter
        self.public_url = public_url
        self.members: set[Subscriber] = set()
        metrics.FANOUT_GROUPS.inc()
        self.served = 0
        # Changes executed (and encoded), once each whatever the group's size.
        self.executions = 0
        # The last job rendered and its `payload` JSON.
        self._last: tuple[model.Job, str] | None = None

    @property
    def size(self) -> int:
        return len(self.members)

    def put(self, job: model.Job) -> None:
        # Called by the event listener, which must survive whatever happens here.
        try:
            payload = self.render(job)
            if self.job_filter is not None:
                # `jobUpdates`: no snapshot, never ends with its jobs; each job's
                # latest state waits for a slow client (up to MAILBOX_LIMIT jobs).
                for member in list(self.members):
                    member.connection.send_next(member, payload, job.id)
                return
            key = job.order_key
            ended = job.is_finished
            for member in list(self.members):
                member.deliver(key, payload, ended)
        except Exception:
            logger.exception("could not fan out a change of job %s", job.id)

    def close(self) -> None:
        for member in list(self.members):
            member.end()

    def interrupt(self, why: str) -> None:
        """End every subscription with an error saying why (`SubscriptionInterrupted`)."""
        for member in list(self.members):
            if member.pending is None:
                member.connection.interrupt(member, why)
            else:  # (its snapshot is being read: jobProgress, never interrupted)
                member.end()

    def join(self, member: Subscriber) -> None:
        self.members.add(member)
        self.served += 1

    def leave(self, member: Subscriber) -> None:
        self.members.discard(member)
        if not self.members:
            if self._fanout.groups.get(self.key) is self:
                del self._fanout.groups[self.key]
                metrics.FANOUT_GROUPS.dec()
            self.events.release(self)

    def render(self, job: model.Job) -> str:
        """The `payload` of the job's `next` message, as JSON."""
        last = self._last
        if last is not None and last[0] is job:
            return last[1]
        self.executions += 1
        result = self.executor.build_per_event_executor(
            Job.from_record(job, self.public_url)
        ).execute_operation(False)
        payload: dict[str, Any]
        if isinstance(result, ExecutionResult) and not result.errors:
            payload = {"data": result.data}
        else:
            payload = self._with_errors(result)
        text = self._fanout.encode(payload)
        self._last = (job, text)
        return text

    def _with_errors(self, result: object) -> dict[str, Any]:
        """What strawberry would send for a result with errors (never expected here)."""
        if not isinstance(result, ExecutionResult):
            with suppress(Exception):
                result.close()  # type: ignore[attr-defined]
            result = ExecutionResult(None, [GraphQLError("execution did not finish at once")])
        masked = finish_errors(list(result.errors or ()), self.plan.document)
        return {"data": result.data, "errors": [error.formatted for error in masked]}


class Subscriber:
    """One subscription on this path: what its connection needs to send it frames."""

    __slots__ = ("connection", "group", "id", "last", "pending")

    def __init__(self, connection: FastPath, op_id: str, group: Group) -> None:
        self.connection = connection
        self.id = op_id
        self.group = group
        # Until its snapshot is sent: the changes heard meanwhile (None: closed).
        self.pending: list[tuple[OrderKey, str, bool] | None] | None = []
        # Its snapshot's place, until a later change has been sent: older ones are dropped.
        self.last: OrderKey | None = None

    def deliver(self, key: OrderKey, payload: str, ended: bool) -> None:
        if self.pending is not None:
            self.pending.append((key, payload, ended))
            return
        if self.last is not None:
            if key <= self.last:
                return
            self.last = None
        self.connection.send_next(self, payload)
        if ended:
            self.connection.finish(self)

    def end(self) -> None:
        if self.pending is not None:
            self.pending.append(None)
        else:
            self.connection.finish(self)
