"""`jobProgress` and `jobUpdates` below strawberry: one execution per change, frames to sockets.

strawberry runs every subscription as its own task: each change travels through
a chain of async iterators, the extensions' hooks and an encoding, once per
subscriber (~120 µs each, ~30 KiB of objects per subscription). Here, subscribers
that sent the same document and variables from the same tenant form one `_Group`: of
one job (`jobProgress`), or of the tenant's changes one filter is concerned with
(`jobUpdates`, registered per tenant, its filter checked once per change for the whole
group). The event listener hands the group each change: it executes the document once,
encodes the result once, and writes the `next` frame to each subscriber's socket at
once, as a bare WebSocket broadcast would. A subscription is a small `_Subscriber` (its
id, its connection, where its snapshot stands). `jobUpdates` has no snapshot: it hears
changes from the moment it is subscribed.

A write never waits: uvicorn puts a frame in the transport's buffer and returns.
Only when a client stops reading and that buffer is full does its connection's
`Outbox` hand the write to a task; until it is done, later frames wait in the outbox,
per subscription and job the latest state only: a slow `jobProgress` client gets where
its job is now, a slow `jobUpdates` client where each job it heard of is now, in the
order of their latest changes. A `jobUpdates` subscription with more than
MAILBOX_LIMIT jobs waiting is ended as strawberry's way ends it (what waits is dropped;
the `SUBSCRIPTION_INTERRUPTED` error saying it fell behind, then `complete`), and so is
every one of a tenant's after a broker outage too long to catch up with (`interrupt`).
Either way a slow client holds up nobody, and what waits for it is bounded.

Only what this path fully serves takes it (a valid subscription document without
directives whose one root field is `jobProgress`, for a job the caller may read, or
`jobUpdates`); anything else, and any error on the way (NOT_FOUND, a bad variable, a
missing scope...), goes strawberry's own way, which reports it as it always does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Generator, Hashable
from contextlib import suppress
from typing import Any

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLFormattedError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Visitor,
    parse,
    specified_rules,
    visit,
)
from graphql.execution.values import get_argument_values
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionErrorMessage,
    ErrorMessage,
    OperationMessage,
    StartMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.types.arguments import convert_arguments

from app.auth import READ
from app.errors import SubscriptionInterrupted, Unauthenticated
from app.graphql.caches import cacheable
from app.graphql.context import Context
from app.graphql.errors import QUERY_TOO_COMPLEX, MaskUnexpected, assign_code, log_unexpected
from app.graphql.limits import STRAWBERRY_RULES, Limits, validate_within_limits
from app.graphql.subscriptions import frozen
from app.graphql.types import Job, JobFilter
from app.graphql.wsmessages import MalformedMessage, check_legacy, check_transport
from app.jobs import model
from app.jobs.buffers import Backlog
from app.jobs.events import FELL_BEHIND, MAILBOX_LIMIT, JobEvents

logger = logging.getLogger("app.graphql")

# Query texts whose fast-path plan (or refusal) is remembered; small ones only
# (`app.graphql.caches.cacheable`): a plan keeps its parsed document. As many as
# strawberry's parser cache keeps, for the same worst case (app/graphql/caches.py).
PLANS_KEPT = 128

OrderKey = tuple[Any, ...]

TOKEN_EXPIRED = "token has expired"

# What graphql-transport-ws closes with, and the legacy protocol now too.
INIT_TIMEOUT = (4408, "Connection initialisation timeout")
TOO_MANY_INITS = (4429, "Too many initialisation requests")
# The most a WebSocket close frame's reason may hold (RFC 6455: 125 bytes less the code).
MAX_REASON_BYTES = 123


def close_reason(text: str) -> str:
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


# --- writing without waiting ------------------------------------------------------------


class Outbox:
    """One connection's frames from fanned-out subscriptions, in order, never waited for.

    A frame is written at once. If the write cannot finish (the client stopped reading
    and the transport paused writing), one task finishes it, and until then later
    frames wait here, per subscription: the latest `next` of each job (one for
    `jobProgress`; for `jobUpdates`, of each job it heard of, in the order of their
    latest changes, at most MAILBOX_LIMIT jobs), then its final frame.
    """

    __slots__ = ("_send", "_waiting", "_writing", "closed")

    def __init__(self, send: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        self._send = send
        self._writing: asyncio.Task[None] | None = None
        # Operation id -> its frames waiting, by job (None: its one job; _FINAL last).
        self._waiting: dict[str, Backlog[str]] = {}
        self.closed = False

    def write(self, op: str, frame: str, job: Hashable = None, final: bool = False) -> bool:
        """Send or keep `frame`; False once `op` has more than MAILBOX_LIMIT jobs waiting."""
        if self.closed:
            return True
        if self._writing is None:
            self._start(frame)
            return True
        slot = self._waiting.get(op)
        if slot is None:
            slot = self._waiting[op] = Backlog(MAILBOX_LIMIT)
        # A later state replaces the one waiting, and goes after the other jobs': each
        # job's states stay in order, the final frame last.
        return slot.put(_FINAL if final else job, frame)

    def drop(self, op: str) -> None:
        """Forget what waits for `op` (its client ended it)."""
        self._waiting.pop(op, None)

    async def close(self) -> None:
        self.closed = True
        self._waiting.clear()
        writing = self._writing
        if writing is not None:
            writing.cancel()
            with suppress(BaseException):
                await writing

    def _start(self, frame: str) -> None:
        # Run the send by hand: it returns at its first step unless writing is paused.
        send = self._send(frame)
        try:
            blocker = send.send(None)
        except StopIteration:
            return
        except Exception:  # the client is gone; its connection's handler cleans up
            self.closed = True
            return
        self._writing = asyncio.ensure_future(self._finish(send, blocker))

    async def _finish(self, send: Coroutine[Any, Any, None], blocker: Any) -> None:
        try:
            await _Resume(send, blocker)
            # One frame at a time, so what waits is what `write` counts.
            while self._waiting and not self.closed:
                op, slot = next(iter(self._waiting.items()))
                frame = slot.pop()
                if not slot:
                    del self._waiting[op]
                await self._send(frame)
        except Exception:
            self.closed = True
            self._waiting.clear()
        finally:
            self._writing = None


# The key of a subscription's final frame in the outbox (after its `next` frames).
_FINAL = object()


class _Resume:
    """Awaits the rest of a coroutine started by hand, now waiting on `blocker`.

    It yields to the task what the coroutine yielded, and passes back what the task
    sends or throws in (a task always resumes with None, or throws in a cancellation).
    """

    __slots__ = ("_blocker", "_coroutine")

    def __init__(self, coroutine: Coroutine[Any, Any, None], blocker: Any) -> None:
        self._coroutine = coroutine
        self._blocker = blocker

    def __await__(self) -> Generator[Any, None, None]:
        coroutine, blocker = self._coroutine, self._blocker
        while True:
            try:
                yield blocker
            except BaseException as exc:
                try:
                    blocker = coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    blocker = coroutine.send(None)
                except StopIteration:
                    return


# --- which subscriptions take this path -------------------------------------------------


# The root fields this path serves.
_FIELDS = ("jobProgress", "jobUpdates")


class _Plan:
    """A subscription document this path serves: one `jobProgress` or `jobUpdates` field
    at the root."""

    __slots__ = ("document", "field", "field_def", "updates")

    def __init__(self, document: DocumentNode, field: FieldNode, field_def: GraphQLField) -> None:
        self.document = document
        self.field = field
        self.field_def = field_def
        # `jobUpdates`: the tenant's changes its filter is concerned with, from now on.
        self.updates = field.name.value == "jobUpdates"


class _HasDirectives(Visitor):
    found = False

    def enter_directive(self, *_: object) -> None:
        self.found = True


class Fanout:
    """The fast path of one view: plans by query text, groups by what they execute."""

    def __init__(
        self,
        schema: strawberry.Schema,
        executor_class: Any,
        limits: Limits,
        rules: list[Any],
        max_tokens: int,
        encode: Callable[[object], str],
    ) -> None:
        self.schema: GraphQLSchema = schema._schema
        # What strawberry converts a resolver's arguments with (`arguments`).
        self._scalars = schema.schema_converter.scalar_registry
        self._config = schema.config
        # Builds an execution of a plan's document (`Executor.build`).
        self.executor_class = executor_class
        # JSON text, as the view encodes every other message.
        self.encode = encode
        self._limits = limits
        self._rules = (*specified_rules, *rules, *STRAWBERRY_RULES)
        self._max_tokens = max_tokens
        self._plans: OrderedDict[tuple[str, str | None], _Plan | GraphQLError | None] = (
            OrderedDict()
        )
        self.groups: dict[Hashable, _Group] = {}

    def arguments(self, plan: _Plan, values: dict[str, Any]) -> dict[str, Any]:
        """The root field's coerced argument values as its resolver gets them (input
        objects as their strawberry types), converted as strawberry converts them."""
        field = plan.field_def.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
        return convert_arguments(
            values, field.arguments, scalar_registry=self._scalars, config=self._config
        )

    def plan(self, query: object, operation_name: object) -> _Plan | GraphQLError | None:
        """This path's plan for the document; None to leave it to strawberry; or the
        error of a document refused for its size (QUERY_TOO_COMPLEX), to send here."""
        if not isinstance(query, str) or not isinstance(operation_name, str | None):
            return None
        if not cacheable(query):  # planned for this subscription only
            return self._make_plan(query, operation_name)
        key = (query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = self._plans[key] = self._make_plan(query, operation_name)
        if len(self._plans) > PLANS_KEPT:
            self._plans.popitem(last=False)
        return plan

    def _make_plan(self, query: str, operation_name: str | None) -> _Plan | GraphQLError | None:
        # Stricter than strawberry, never looser: whatever is refused here goes its way,
        # but a document too long or too deep to parse: strawberry's graphql-transport-ws
        # handler closes the socket (4400) on any syntax error, where a document over a
        # limit is an `error` message (QUERY_TOO_COMPLEX), as it is once parsed.
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError as error:
            return error if assign_code(error, None) == QUERY_TOO_COMPLEX else None
        if validate_within_limits(self.schema, document, self._limits, self._rules):
            return None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1:
            return None
        operation = operations[0]
        if operation.operation is not OperationType.SUBSCRIPTION or (
            operation_name is not None
            and (operation.name is None or operation.name.value != operation_name)
        ):
            return None
        selections = operation.selection_set.selections
        if len(selections) != 1 or not isinstance(selections[0], FieldNode):
            return None
        field = selections[0]
        subscription = self.schema.subscription_type
        if field.name.value not in _FIELDS or subscription is None:
            return None
        directives = _HasDirectives()
        visit(document, directives)  # @skip, @include, @defer...: strawberry's way
        if directives.found:
            return None
        return _Plan(document, field, subscription.fields[field.name.value])


# --- one execution per change, one frame per subscriber ---------------------------------


class _Group:
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
        plan: _Plan,
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
        self.members: set[_Subscriber] = set()
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

    def join(self, member: _Subscriber) -> None:
        self.members.add(member)
        self.served += 1

    def leave(self, member: _Subscriber) -> None:
        self.members.discard(member)
        if not self.members:
            if self._fanout.groups.get(self.key) is self:
                del self._fanout.groups[self.key]
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
        errors = list(result.errors or ())
        for error in errors:
            if assign_code(error, self.plan.document) == "INTERNAL_SERVER_ERROR":
                log_unexpected(error)
        masked = MaskUnexpected()._process_errors(errors)
        return {"data": result.data, "errors": [error.formatted for error in masked]}


class _Subscriber:
    """One subscription on this path: what its connection needs to send it frames."""

    __slots__ = ("connection", "group", "id", "last", "pending")

    def __init__(self, connection: _FastPath, op_id: str, group: _Group) -> None:
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


# --- the protocol handlers --------------------------------------------------------------


class _FastPath:
    """What both protocols' handlers add: serving `jobProgress` and `jobUpdates` on this path."""

    view: Any  # the GraphQLView, which holds the `Fanout`
    context: Context
    websocket: Any
    # The frames of the protocol, around an operation id (JSON) and a payload.
    _next: tuple[str, str, str]
    _complete: tuple[str, str]

    def _fast_init(self) -> None:
        self._fast: dict[str, _Subscriber] = {}
        self._outbox: Outbox | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._expiring: asyncio.Task[None] | None = None

    # A connection lives no longer than the token it was opened with: when the token
    # expires it is closed, and the client connects again with a fresh one.

    def _watch_expiry(self) -> None:
        caller = self.context.caller
        if self.connection_acknowledged and caller is not None and caller.expires is not None:
            delay = max(0.0, caller.expires - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiring = asyncio.ensure_future(self._close_expired())

    async def _close_expired(self) -> None:
        raise NotImplementedError

    def _stop_watching(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()

    connection_acknowledged: bool

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
        fanout: Fanout = self.view.fanout
        if isinstance(query, str) and len(query) > self.context.settings.max_query_length:
            return False  # refused strawberry's way, before anything parses it
        plan = fanout.plan(query, operation_name)
        if isinstance(plan, GraphQLError):
            await self.refuse(op_id, plan)
            return True
        if plan is None or (variables is not None and not isinstance(variables, dict)):
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
        public_url = context.settings.public_url
        if job_filter is not None:
            key: Hashable = (events, plan, variables_key, jobs.tenant, public_url)
            self._watch(op_id, key, events, plan, executor, jobs.tenant, public_url, job_filter)
            return True
        job_id = arguments["id"]
        key = (events, plan, variables_key, jobs.tenant, job_id, public_url)
        group = fanout.groups.get(key)
        if group is None:
            group = _Group(fanout, key, events, plan, executor, jobs.tenant, job_id, public_url)
            fanout.groups[key] = group
            events.join(group)
        subscriber = _Subscriber(self, op_id, group)
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
        self._fast[op_id] = subscriber
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
        plan: _Plan,
        executor: Any,
        tenant: str,
        public_url: str,
        job_filter: model.JobFilter,
    ) -> None:
        """`jobUpdates`: heard from now on (no snapshot), in the group of its question."""
        fanout: Fanout = self.view.fanout
        group = fanout.groups.get(key)
        if group is None:
            group = _Group(
                fanout, key, events, plan, executor, tenant, None, public_url, job_filter
            )
            fanout.groups[key] = group
            events.join(group)
        subscriber = _Subscriber(self, op_id, group)
        subscriber.pending = None
        group.join(subscriber)
        self._fast[op_id] = subscriber

    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self.websocket.ws.send_text)
        return self._outbox

    def send_next(self, subscriber: _Subscriber, payload: str, job: Hashable = None) -> None:
        before, middle, after = self._next
        quoted = orjson.dumps(subscriber.id).decode()
        frame = f"{before}{quoted}{middle}{payload}{after}"
        if not self.outbox().write(subscriber.id, frame, job):
            # Behind on too many jobs (`jobUpdates`), as a `Mailbox` would be.
            self.interrupt(subscriber, FELL_BEHIND)

    def interrupt(self, subscriber: _Subscriber, why: str) -> None:
        """Drop what waits for the subscription, end it with an error saying why (as
        strawberry's way ends a stream raising `SubscriptionInterrupted`), free it."""
        if self._outbox is not None:
            self._outbox.drop(subscriber.id)
        error = GraphQLError(why, original_error=SubscriptionInterrupted(why))
        assign_code(error, subscriber.group.plan.document)
        payload = self.view.fanout.encode({"data": None, "errors": [error.formatted]})
        self.send_next(subscriber, payload)
        self.finish(subscriber)

    def finish(self, subscriber: _Subscriber) -> None:
        """The subscription is over: `complete`, and it frees what it held."""
        if self._fast.get(subscriber.id) is subscriber:
            del self._fast[subscriber.id]
            self._forget(subscriber.id)
        subscriber.group.leave(subscriber)
        before, after = self._complete
        quoted = orjson.dumps(subscriber.id).decode()
        self.outbox().write(subscriber.id, f"{before}{quoted}{after}", final=True)

    def _stop(self, op_id: str) -> _Subscriber | None:
        """The client ended the operation (or left): forget it, send nothing more."""
        subscriber = self._fast.pop(op_id, None)
        if subscriber is not None:
            subscriber.group.leave(subscriber)
            if self._outbox is not None:
                self._outbox.drop(op_id)
        return subscriber

    async def _close_fast(self) -> None:
        for op_id in list(self._fast):
            self._stop(op_id)
        if self._outbox is not None:
            await self._outbox.close()


def _limit_reached(limit: int) -> GraphQLError:
    return GraphQLError(
        f"subscription limit reached: one connection runs at most {limit} operations at a time",
        extensions={"code": QUERY_TOO_COMPLEX},
    )


class TransportWSHandler(_FastPath, BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, with `jobProgress` and `jobUpdates` on the fast path."""

    _next = ('{"id":', ',"type":"next","payload":', "}")
    _complete = ('{"id":', ',"type":"complete"}')

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast_init()

    async def handle_message(self, message: Message) -> None:
        try:
            check_transport(message)
        except MalformedMessage as exc:
            # The protocol: "receiving a message of a type or format which is not
            # specified in this document" closes the socket with 4400.
            await self.handle_invalid_message(close_reason(exc.message))
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if message.get("payload", {}) is None:
            # The protocol allows a null payload; strawberry closes the connection (4400).
            message = ConnectionInitMessage(type="connection_init")
        await super().handle_connection_init(message)
        self._watch_expiry()

    async def _close_expired(self) -> None:
        # As a refused `connection_init` is closed: the client's next connection sends a new token.
        await self.websocket.close(code=4403, reason=TOKEN_EXPIRED)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # strawberry's checks, then a task that tries this path before strawberry's.
        if not self.connection_acknowledged:
            await self.websocket.close(code=4401, reason="Unauthorized")
            return
        if message["id"] in self.operations:
            reason = f"Subscriber for {message['id']} already exists"
            await self.websocket.close(code=4409, reason=reason)
            return
        if (
            self.max_subscriptions_per_connection is not None
            and len(self.operations) >= self.max_subscriptions_per_connection
        ):
            error = _limit_reached(self.max_subscriptions_per_connection)
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        payload = message["payload"]
        operation = Operation(
            self,
            message["id"],
            payload["query"],
            payload.get("variables"),
            payload.get("operationName"),
        )
        operation.task = asyncio.create_task(self._run(operation))
        operation.task.add_done_callback(self._task_done)
        self.operations[message["id"]] = operation

    async def _run(self, operation: Operation[Context, None]) -> None:
        served = await self._serve(
            operation.id, operation.query, operation.variables, operation.operation_name
        )
        if served:
            operation.task = None  # nothing runs for it any more
        else:
            await self.run_operation(operation)

    def _forget(self, op_id: str) -> None:
        self.operations.pop(op_id, None)

    async def refuse(self, op_id: str, error: GraphQLError) -> None:
        self._forget(op_id)
        await self.send_message({"id": op_id, "type": "error", "payload": [error.formatted]})

    async def cleanup_operation(self, operation_id: str) -> None:
        if self._stop(operation_id) is not None:
            self.operations.pop(operation_id, None)
            return
        await super().cleanup_operation(operation_id)

    async def shutdown(self) -> None:
        self._stop_watching()
        await super().shutdown()
        await self._close_fast()


class LegacyWSHandler(_FastPath, BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol, with `jobProgress` and `jobUpdates` on the fast path."""

    _next = ('{"type":"data","id":', ',"payload":', "}")
    _complete = ('{"type":"complete","id":', "}")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast_init()
        self._init_received = False
        self._init_timeout: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        # The current protocol's rule, which strawberry applies to it alone: a
        # connection that has not sent `connection_init` in time is closed (4408).
        delay = self.view.connection_init_wait_timeout.total_seconds()
        timer = asyncio.get_running_loop().call_later(delay, self._init_timed_out)
        try:
            await super().handle()
        finally:
            timer.cancel()
            if self._init_timeout is not None:
                self._init_timeout.cancel()

    def _init_timed_out(self) -> None:
        if not self._init_received:
            self._init_timeout = asyncio.ensure_future(self._close(*INIT_TIMEOUT))

    async def _close(self, code: int, reason: str) -> None:
        with suppress(Exception):  # the client is gone already: nothing to close
            await self.websocket.close(code=code, reason=reason)

    async def handle_message(self, message: OperationMessage) -> None:
        try:
            check_legacy(message)
        except MalformedMessage as exc:
            await self._refuse(exc)
            return
        await super().handle_message(message)

    async def _refuse(self, exc: MalformedMessage) -> None:
        """A malformed message is answered as subscriptions-transport-ws answers one:
        an `error` for the operation it starts, else a `connection_error`; the
        connection stays open."""
        if exc.operation_id is not None:
            error: GraphQLFormattedError = {
                "message": exc.message,
                "extensions": {"code": exc.code},
            }
            await self.send_message(ErrorMessage(type="error", id=exc.operation_id, payload=error))
        else:
            payload: dict[str, object] = {"code": exc.code, "message": exc.message}
            await self.send_message(
                ConnectionErrorMessage(type="connection_error", payload=payload)
            )

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        # One per connection, as in the current protocol: a second one would run
        # `on_ws_connect` again and start another keep-alive task, never cancelled.
        if self._init_received:
            await self.websocket.close(*TOO_MANY_INITS)
            return
        self._init_received = True
        await super().handle_connection_init(message)
        self._watch_expiry()

    async def _close_expired(self) -> None:
        # As a refused `connection_init` is answered.
        payload: dict[str, object] = {"code": Unauthenticated.code, "message": TOKEN_EXPIRED}
        await self.send_message(ConnectionErrorMessage(type="connection_error", payload=payload))
        await self.websocket.close(code=1011, reason="")

    async def handle_start(self, message: StartMessage) -> None:
        # strawberry's checks, then a task that tries this path before strawberry's.
        if not self.connection_acknowledged:
            await self.websocket.close(code=4401, reason="Unauthorized")
            return
        operation_id = message["id"]
        if operation_id in self.tasks or operation_id in self._fast:
            await self.cleanup_operation(operation_id)
        if (
            self.max_subscriptions_per_connection is not None
            and len(self.tasks) + len(self._fast) >= self.max_subscriptions_per_connection
        ):
            await self.send_message(
                ErrorMessage(
                    type="error",
                    id=operation_id,
                    payload=_limit_reached(self.max_subscriptions_per_connection).formatted,
                )
            )
            return
        payload = message["payload"]
        self.tasks[operation_id] = asyncio.create_task(
            self._run(
                operation_id,
                payload["query"],
                payload.get("operationName"),
                payload.get("variables"),
            )
        )

    async def _run(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        try:
            served = await self._serve(operation_id, query, variables, operation_name)
        except asyncio.CancelledError:  # stopped while starting: confirmed, as strawberry does
            self.tasks.pop(operation_id, None)
            await self.send_message({"type": "complete", "id": operation_id})
            return
        if served:
            self.tasks.pop(operation_id, None)
        else:
            await self.handle_async_results(operation_id, query, operation_name, variables)

    def _forget(self, op_id: str) -> None:
        pass  # its id is free once it is out of `_fast`

    async def refuse(self, op_id: str, error: GraphQLError) -> None:
        await self.send_message(ErrorMessage(type="error", id=op_id, payload=error.formatted))

    async def cleanup_operation(self, operation_id: str) -> None:
        if self._stop(operation_id) is not None:
            # The legacy protocol confirms a stop.
            before, after = self._complete
            quoted = orjson.dumps(operation_id).decode()
            self.outbox().write(operation_id, f"{before}{quoted}{after}", final=True)
            return
        await super().cleanup_operation(operation_id)

    async def cleanup(self) -> None:
        self._stop_watching()
        await self._close_fast()
        await super().cleanup()
