"""What both protocols' handlers add to serve `jobProgress` and `jobUpdates` by fan-out.

`_serve` tries the operation on the fan-out (app.graphql.ws.groups): it returns False,
leaving it to strawberry, for anything it does not fully serve and on any error on the
way (NOT_FOUND, a bad variable, a missing scope...), which strawberry then reports as
it always does. A `jobProgress` subscriber hears changes before its snapshot is read,
so a change committed meanwhile is not lost; `jobUpdates` has no snapshot.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from graphql import GraphQLError, get_argument_values

from app import metrics
from app.auth import READ
from app.errors import SubscriptionInterrupted
from app.graphql import metrics as operations
from app.graphql.context import Context
from app.graphql.errors import assign_code
from app.graphql.types import JobFilter
from app.graphql.ws.groups import Fanout, Group, Subscriber
from app.graphql.ws.outbox import Outbox
from app.graphql.ws.plan import Plan
from app.jobs import model
from app.jobs.events import JobEvents
from app.jobs.mailbox import FELL_BEHIND, count_interruption

# Each protocol's gauges, looked up once (not kept per connection: memory per connection).
_CONNECTIONS = {
    protocol: metrics.WEBSOCKET_CONNECTIONS.labels(protocol) for protocol in metrics.PROTOCOLS
}
_SUBSCRIPTIONS = {
    protocol: metrics.SUBSCRIPTIONS.labels(protocol)
    for protocol in (*metrics.PROTOCOLS, *metrics.STREAM_PROTOCOLS)
}


class FastPath:
    """Serving `jobProgress` and `jobUpdates` by fan-out, for either WebSocket protocol's
    handler and for streams over HTTP (app.graphql.streams): each says how its frames
    look (`next_frame`, `complete_frame`) and where they go (`outbox`)."""

    # The GraphQLView: its `Plans`, and its `Fanout` (None: FAST_PATHS off).
    view: Any
    context: Context
    websocket: Any
    # The frames of the protocol, around an operation id (JSON) and a payload.
    _next: tuple[str, str, str]
    _complete: tuple[str, str]
    # Its subprotocol, as the metrics label it.
    protocol: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast: dict[str, Subscriber] = {}
        self._outbox: Outbox | None = None
        # A handler per connection, made as it is handled: its life is the
        # connection's (no wrapper around `handle`: its frame would stay as long).
        # HTTP streams count themselves (app.graphql.streams.stream: http_streams).
        if self.protocol in _CONNECTIONS:
            _CONNECTIONS[self.protocol].inc()

    def disconnected(self) -> None:
        """The connection's handling is over (its handler's last step)."""
        _CONNECTIONS[self.protocol].dec()

    @contextmanager
    def running(self) -> Iterator[None]:
        """An operation strawberry runs, counted while it runs (`subscriptions`)."""
        _SUBSCRIPTIONS[self.protocol].inc()
        try:
            yield
        finally:
            _SUBSCRIPTIONS[self.protocol].dec()

    def _add(self, subscriber: Subscriber) -> None:
        self._fast[subscriber.id] = subscriber
        _SUBSCRIPTIONS[self.protocol].inc()

    def _end(self, subscriber: Subscriber, outcome: str = operations.OK) -> None:
        """A fanned-out subscription is over: counted as strawberry's are when they end."""
        _SUBSCRIPTIONS[self.protocol].dec()
        operations.record(operations.SUBSCRIPTION, subscriber.group.plan.name, outcome)

    def _forget(self, op_id: str) -> None:
        """The operation is over: its id may be used again."""
        raise NotImplementedError

    async def refuse(self, op_id: str, error: GraphQLError) -> None:
        """Answer the operation with the protocol's `error` message; it is over."""
        raise NotImplementedError

    async def _serve(
        self, op_id: str, query: object, variables: object, operation_name: object
    ) -> bool:
        """Serve the operation on this path; False to leave it to strawberry."""
        plan = self.view.plans.get(query, operation_name)
        if isinstance(plan, GraphQLError):  # too long or deep to parse (FAST_PATHS or not)
            name = metrics.OTHER if operation_name is not None else metrics.ANONYMOUS
            operations.record(operations.UNKNOWN, name, metrics.outcome(assign_code(plan, None)))
            await self.refuse(op_id, plan)
            return True
        fanout: Fanout | None = self.view.fanout
        if fanout is None or plan is None:  # FAST_PATHS off, or not for the fan-out
            return False
        if variables is not None and not isinstance(variables, dict):
            return False
        context = self.context
        events = context.events
        if events.closing:
            return False
        try:
            jobs = context.jobs
            jobs.allow(READ)
            executor = fanout.executor_class.build(
                fanout.schema, plan.document, raw_variable_values=variables
            )
            if isinstance(executor, list):  # variables that do not fit
                return False
            arguments = get_argument_values(plan.field_def, plan.field, executor.variable_values)
            variables_key = frozen(executor.variable_values.coerced)
            job_filter = (
                JobFilter.to_model(fanout.arguments(plan, arguments).get("filter"))
                if plan.updates
                else None
            )
        except Exception:  # strawberry's way tells the client what is wrong
            return False
        public_url = context.public_url
        if job_filter is not None:
            key: Hashable = (events, plan, variables_key, jobs.tenant, public_url)
            self._watch(op_id, key, events, plan, executor, jobs.tenant, public_url, job_filter)
            return True
        job_id = arguments["id"]
        key = (events, plan, variables_key, jobs.tenant, job_id, public_url)
        group = fanout.groups.get(key)
        if group is None:
            group = Group(fanout, key, events, plan, executor, jobs.tenant, job_id, public_url)
            fanout.groups[key] = group
            events.join(group)
        subscriber = Subscriber(self, op_id, group)
        group.join(subscriber)
        # Listening before the snapshot is read: a change committed meanwhile is heard.
        try:
            snapshot = await jobs.get(job_id)
        except Exception:
            snapshot = None
        except BaseException:
            group.leave(subscriber)
            raise
        if snapshot is None:  # NOT_FOUND, UNAVAILABLE...: said strawberry's way
            group.leave(subscriber)
            return False
        self._add(subscriber)
        pending, subscriber.pending = subscriber.pending, None
        self.send_next(subscriber, group.render(snapshot))
        if snapshot.is_finished:
            self.finish(subscriber)
            return True
        last = snapshot.order_key
        for change in pending or ():
            if change is None:
                self.finish(subscriber)
                return True
            key_, payload, ended = change
            if key_ > last:
                last = key_
                self.send_next(subscriber, payload)
                if ended:
                    self.finish(subscriber)
                    return True
        subscriber.last = last
        return True

    def _watch(
        self,
        op_id: str,
        key: Hashable,
        events: JobEvents,
        plan: Plan,
        executor: Any,
        tenant: str,
        public_url: str,
        job_filter: model.JobFilter,
    ) -> None:
        """`jobUpdates`: heard from now on (no snapshot), in the group of its question."""
        fanout: Fanout = self.view.fanout
        group = fanout.groups.get(key)
        if group is None:
            group = Group(fanout, key, events, plan, executor, tenant, None, public_url, job_filter)
            fanout.groups[key] = group
            events.join(group)
        subscriber = Subscriber(self, op_id, group)
        subscriber.pending = None
        group.join(subscriber)
        self._add(subscriber)

    def next_frame(self, op_id: str, payload: str) -> str:
        """The protocol's `next` message of the operation, around a JSON `payload`."""
        before, middle, after = self._next
        return f"{before}{orjson.dumps(op_id).decode()}{middle}{payload}{after}"

    def complete_frame(self, op_id: str) -> str:
        """The protocol's `complete` message of the operation."""
        before, after = self._complete
        return f"{before}{orjson.dumps(op_id).decode()}{after}"

    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self.websocket.ws.send_text)
        return self._outbox

    def send_next(self, subscriber: Subscriber, payload: str, job: Hashable = None) -> None:
        frame = self.next_frame(subscriber.id, payload)
        if not self.outbox().write(subscriber.id, frame, job):
            # Behind on too many jobs (`jobUpdates`), as a `Mailbox` would be.
            self.interrupt(subscriber, FELL_BEHIND)

    def interrupt(self, subscriber: Subscriber, why: str) -> None:
        """Drop what waits for the subscription, end it with an error saying why (as
        strawberry's way ends a stream raising `SubscriptionInterrupted`), free it."""
        if self._outbox is not None:
            self._outbox.drop(subscriber.id)
        count_interruption(why)
        error = GraphQLError(why, original_error=SubscriptionInterrupted(why))
        assign_code(error, subscriber.group.plan.document)
        payload = self.view.fanout.encode({"data": None, "errors": [error.formatted]})
        self.send_next(subscriber, payload)
        self.finish(subscriber, SubscriptionInterrupted.code)

    def finish(self, subscriber: Subscriber, outcome: str = operations.OK) -> None:
        """The subscription is over: `complete`, and it frees what it held."""
        if self._fast.get(subscriber.id) is subscriber:
            del self._fast[subscriber.id]
            self._end(subscriber, outcome)
            self._forget(subscriber.id)
        subscriber.group.leave(subscriber)
        self.outbox().write(subscriber.id, self.complete_frame(subscriber.id), final=True)

    def _stop(self, op_id: str) -> Subscriber | None:
        """The client ended the operation (or left): forget it, send nothing more."""
        subscriber = self._fast.pop(op_id, None)
        if subscriber is not None:
            self._end(subscriber)
            subscriber.group.leave(subscriber)
            if self._outbox is not None:
                self._outbox.drop(op_id)
        return subscriber

    async def _close_fast(self) -> None:
        for op_id in list(self._fast):
            self._stop(op_id)
        if self._outbox is not None:
            await self._outbox.close()


def frozen(value: Any) -> Hashable:
    """A hashable equivalent of coerced variable values (TypeError if there is none)."""
    if isinstance(value, dict):
        return ("dict", *((name, frozen(item)) for name, item in sorted(value.items())))
    if isinstance(value, list):
        return ("list", *(frozen(item) for item in value))
    hash(value)
    return (type(value), value)
