"""Live jobs over WebSocket: one job's progress, or every change the caller may see."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Annotated, Any

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.graphql.context import Info
from app.graphql.types import Job, JobFilter
from app.jobs import model
from app.jobs.events import JobStream


class _Change:
    """One change as every local subscriber gets it: one `Job` object, and the results
    computed for it, by operation and variables (see `SharedEventResults`)."""

    __slots__ = ("job", "payload", "public_url", "results")

    def __init__(self, job: model.Job, public_url: str) -> None:
        self.job = job
        self.public_url = public_url
        self.payload = Job.from_record(job, public_url)
        self.results: dict[Hashable, GraphQLExecutionResult] = {}


class _RecentChanges:
    """The GraphQL form of the latest changes, by the identity of the listener's job object.

    The listener hands the same `model.Job` object to every subscriber of a change, so
    the first subscriber to reach it converts it and the others reuse that.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._by_job: OrderedDict[int, _Change] = OrderedDict()
        self._by_payload: dict[int, _Change] = {}
        # The `data` of shared results (by identity), with their JSON once encoded.
        self._data: dict[int, list[Any]] = {}

    def payload(self, job: model.Job, public_url: str) -> Job:
        change = self._by_job.get(id(job))
        if change is None or change.job is not job or change.public_url != public_url:
            change = _Change(job, public_url)
            self._by_job[id(job)] = change
            self._by_payload[id(change.payload)] = change
            if len(self._by_job) > self._size:
                _, oldest = self._by_job.popitem(last=False)
                self._by_payload.pop(id(oldest.payload), None)
                for result in oldest.results.values():
                    self._data.pop(id(result.data), None)
        return change.payload

    def results(self, payload: object) -> dict[Hashable, GraphQLExecutionResult] | None:
        change = self._by_payload.get(id(payload))
        return change.results if change is not None and change.payload is payload else None

    def share(
        self,
        results: dict[Hashable, GraphQLExecutionResult],
        key: Hashable,
        result: GraphQLExecutionResult,
    ) -> None:
        results[key] = result
        self._data[id(result.data)] = [result.data, None]

    def data_json(
        self, data: object, encode: Callable[[object], str | bytes]
    ) -> str | bytes | None:
        """The JSON of a shared result's `data`, encoded once; None if not shared."""
        entry = self._data.get(id(data))
        if entry is None or entry[0] is not data:
            return None
        if entry[1] is None:
            entry[1] = encode(data)
        text: str | bytes = entry[1]
        return text


# Subscribers work through a change within moments of each other; a change older
# than these is converted (and executed) again, which is correct, only slower.
_recent = _RecentChanges(size=256)


class SharedEventResults(StrawberryGraphQLCoreExecutionContext):
    """Executes a subscription event once for every subscriber that asked the same.

    Subscribers that sent the same document (the parser cache hands out one object
    per query text) and the same variables get the same result for the same change,
    so a change costs one execution, not one per subscriber. Sound because a `Job`'s
    fields depend on the job alone, never on who asks (tenants never share a change).
    """

    _sharing: tuple[dict[Hashable, GraphQLExecutionResult], Hashable] | None = None

    def build_per_event_executor(self, payload: Any) -> Any:
        results = _recent.results(payload)
        if results is None:
            return super().build_per_event_executor(payload)
        key = self.__dict__.get("_key")
        if key is None:  # once per subscription: its operation and variables
            try:
                key = (id(self.operation), frozen(self.variable_values.coerced))
            except TypeError:  # a variable value that cannot be a key
                key = False
            self.__dict__["_key"] = key
        if key is False:
            return super().build_per_event_executor(payload)
        shared = results.get(key)
        if shared is not None:
            return _Executed(shared)
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, SharedEventResults)
        executor._sharing = (results, key)
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        result = super().execute_operation(serially)
        if self._sharing is not None and isinstance(result, GraphQLExecutionResult):
            if not result.errors:  # (an awaitable, or errors, are not shared)
                _recent.share(*self._sharing, result)
        return result


class _Executed:
    """Stands in for the executor of an event whose result is already known."""

    __slots__ = ("result",)

    def __init__(self, result: GraphQLExecutionResult) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> GraphQLExecutionResult:
        return self.result


def frozen(value: Any) -> Hashable:
    """A hashable equivalent of coerced variable values (TypeError if there is none)."""
    if isinstance(value, dict):
        return ("dict", *((name, frozen(item)) for name, item in sorted(value.items())))
    if isinstance(value, list):
        return ("list", *(frozen(item) for item in value))
    hash(value)
    return (type(value), value)


def message_json(message: object, encode: Callable[[object], str | bytes]) -> str | bytes:
    """`encode(message)`, with a shared result's data encoded once for all its subscribers.

    A `next` message (`data` in the legacy protocol) differs between the subscribers
    of a change only by its operation id: the rest of the text is reused.
    """
    if type(message) is dict and len(message) == 3:
        kind, op, payload = message.get("type"), message.get("id"), message.get("payload")
        if (
            kind in _NEXT_TEMPLATES
            and type(op) is str
            and type(payload) is dict
            and len(payload) == 1
            and "data" in payload
        ):
            data = _recent.data_json(payload["data"], encode)
            if isinstance(data, str):
                return _NEXT_TEMPLATES[kind].format(id=json.dumps(op), data=data)
    return encode(message)


# `json.dumps` of each protocol's result message, as strawberry builds it.
_NEXT_TEMPLATES = {
    "next": '{{"id":{id},"type":"next","payload":{{"data":{data}}}}}',
    "data": '{{"type":"data","id":{id},"payload":{{"data":{data}}}}}',
}


class _AsJobs:
    """A `JobStream` of domain jobs, as GraphQL `Job`s; closing it closes the stream."""

    def __init__(self, stream: JobStream, public_url: str) -> None:
        self._stream = stream
        self._public_url = public_url

    def __aiter__(self) -> _AsJobs:
        return self

    async def __anext__(self) -> Job:
        return _recent.payload(await self._stream.__anext__(), self._public_url)

    async def aclose(self) -> None:
        await self._stream.aclose()


@strawberry.type(description="Live updates, over WebSocket (graphql-transport-ws or graphql-ws).")
class Subscription:
    # Plain coroutines returning a stream (not async generators): an unknown job is
    # refused before the stream starts, so the client gets a protocol `error` message.
    @strawberry.subscription(
        description="One job: its current state first, then every change, in order. "
        "Completes right after the job is COMPLETED, FAILED or deleted (at once for a "
        "job that has already ended). NOT_FOUND for an unknown job."
    )
    async def job_progress(
        self,
        info: Info,
        id: Annotated[uuid.UUID, strawberry.argument(description="The job's id.")],
    ) -> AsyncIterator[Job]:
        stream = await info.context.jobs.follow(id)
        return _AsJobs(stream, info.context.settings.public_url)

    @strawberry.subscription(
        description="Every job created or changed from now on that matches the filter "
        "after the change; a deletion also goes to subscribers whose filter matched "
        "the job before it, so lists can drop it."
    )
    async def job_updates(
        self,
        info: Info,
        filter: Annotated[
            JobFilter | None,
            strawberry.argument(description="Only matching jobs; without it, every live job."),
        ] = None,
    ) -> AsyncIterator[Job]:
        stream = info.context.jobs.watch(JobFilter.to_model(filter))
        return _AsJobs(stream, info.context.settings.public_url)
