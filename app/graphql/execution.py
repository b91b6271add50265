"""A graphql-core executor that takes a short way through plain fields.

graphql-core completes every field the same way: a resolve-info object, argument
coercion, the resolver, then value completion, each step ready for errors, awaitables
and @defer. For plain fields (`id status progress ...` of 50 jobs, their edges and
nodes) that machinery is most of a request's time: a page of 50 jobs is 500 fields.

A field is plain when it has strawberry's default resolver (an attribute read), no
arguments and no directives, and its type is a scalar, an enum, an object type
without `is_type_of`, or a (non-null) list of these. When every field an object's
selection asks for is plain, and no @defer is involved, `execute_fields` here
completes the object with one function made for that selection: it reads the
attributes and nests the results itself, converting the common values inline (a UUID
by `str`, an int in range as it is, an enum member by lookup) and any other value as
graphql-core would. Such functions are made once per selection shape and schema.

Anything unusual on the way (a null for a non-null field, a value a scalar refuses,
an awaitable, an exception) sends the object back through graphql-core's own path,
which gives exactly the result and errors it always did: reading attributes twice
changes nothing. Field middleware (strawberry extensions with a `resolve` hook)
turns the short way off.
"""

from __future__ import annotations

import keyword
import weakref
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLSchema,
    is_leaf_type,
)
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.graphql.caches import MAX_CACHED_CHARS
from app.graphql.completion import PlainField, Plan, compile_plan
from app.lru import LRU, MISSING

# Plans made, per schema, by selection shape; the least recently used go first. A
# shape's own response names are at most MAX_CACHED_CHARS characters long together.
PLANS_KEPT = 512


def _helpers(executor: PlainFieldsExecutor) -> GraphQLResolveInfoHelpers:
    """graphql-core's helpers for resolvers, without its reference cycle.

    graphql-core hands resolvers the executor's own bound methods and keeps them on
    the executor: a cycle, so every request's execution state (~70 objects) waited
    for the garbage collector instead of going when the request did.
    """
    ref = weakref.ref(executor)

    def track(values: Sequence[Any]) -> None:
        alive = ref()
        if alive is not None:
            alive.track_async_work(values)

    return GraphQLResolveInfoHelpers(gather=lambda values: gather_with_cancel(*values), track=track)


class PlainFieldsExecutor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per grouped field set (graphql-core memoizes them per selection and type, so
        # every item of a list shares one), kept alive with its plan so that its id is
        # not reused during this execution.
        self._plans: dict[int, tuple[object, Plan | None]] = {}
        manager = self.middleware_manager
        self._plain_allowed = manager is None or not manager.middlewares
        self.async_helpers = _helpers(self)

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        if position_context is None and self._plain_allowed:
            plan = self._plan(parent_type, grouped_field_set)
            if plan is not None:
                try:
                    return plan(source_value)
                except Exception:  # graphql-core's own path gives the right answer
                    pass
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> Plan | None:
        cached = self._plans.get(id(grouped_field_set))
        if cached is not None:
            return cached[1]
        plan = _plan(self, parent_type, grouped_field_set)
        self._plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan


# --- which selections are plain -------------------------------------------------------


def _plan(
    executor: PlainFieldsExecutor, parent_type: GraphQLObjectType, grouped_field_set: Any
) -> Plan | None:
    # The schema fixes each field's type and how it is read; the selection adds the
    # response names and, for objects, the sub-selections (whose plans stand for them).
    key: list[object] = [parent_type.name]
    # Response names are the client's (aliases): a selection naming more than a small
    # document could is not planned, so no plan keeps a big one (app/graphql/caches.py).
    names_left = MAX_CACHED_CHARS
    for response_name, field_details_list in grouped_field_set.items():
        names_left -= len(response_name)
        if names_left < 0:
            return None
        for details in field_details_list:
            node = details.node
            if (
                details.defer_usage is not None
                or details.fragment_variable_values is not None
                or node.arguments
                or node.directives
            ):
                return None
        node = field_details_list[0].node
        sub_plan = None
        if node.selection_set is not None:
            sub_plan = _sub_plan(executor, parent_type, node.name.value, field_details_list)
            if sub_plan is None:
                return None
        key.append((response_name, node.name.value, sub_plan))
    plans = _PLANS.get(executor.schema)
    if plans is None:
        plans = _PLANS[executor.schema] = LRU(PLANS_KEPT)
    frozen = tuple(key)
    plan = plans.use(frozen, MISSING)
    if plan is MISSING:
        plan = _make_plan(executor, parent_type, key)
        plans.put(frozen, plan)
    return plan


_PLANS: WeakKeyDictionary[GraphQLSchema, LRU[tuple[object, ...], Plan | None]] = WeakKeyDictionary()


def _sub_plan(
    executor: PlainFieldsExecutor,
    parent_type: GraphQLObjectType,
    field_name: str,
    field_details_list: Any,
) -> Plan | None:
    field_def = executor.schema.get_field(parent_type, field_name)
    inner = _named(field_def.type) if field_def is not None else None
    if not isinstance(inner, GraphQLObjectType) or inner.is_type_of is not None:
        return None
    grouped_field_set, new_defer_usages, *_ = executor.collect_subfields(inner, field_details_list)
    if new_defer_usages:
        return None
    return executor._plan(inner, grouped_field_set)


def _make_plan(
    executor: PlainFieldsExecutor, parent_type: GraphQLObjectType, key: list[Any]
) -> Plan | None:
    fields = []
    for response_name, field_name, sub_plan in key[1:]:
        field = _field(executor.schema, parent_type, response_name, field_name, sub_plan)
        if field is None:
            return None
        fields.append(field)
    return compile_plan(fields, executor.is_awaitable)


def _field(
    schema: GraphQLSchema,
    parent_type: GraphQLObjectType,
    response_name: str,
    field_name: str,
    sub_plan: Plan | None,
) -> PlainField | None:
    field_def = schema.get_field(parent_type, field_name)
    if field_def is None or field_def.args:
        return None
    resolve = field_def.resolve
    # strawberry marks its resolver of fields without a resolver of their own.
    if resolve is None or not getattr(resolve, "_is_default", False):
        return None
    definition = field_def.extensions.get("strawberry-definition")
    attribute: str | None = getattr(definition, "python_name", None)
    if (
        getattr(definition, "default_resolver", None) is not getattr
        or getattr(definition, "base_resolver", None) is not None
        or not isinstance(attribute, str)
        or not attribute.isidentifier()
        or keyword.iskeyword(attribute)
    ):
        attribute = None
    if sub_plan is None and not is_leaf_type(_named(field_def.type)):
        return None
    return PlainField(response_name, attribute, resolve, field_def.type, sub_plan)


def _named(type_: GraphQLOutputType) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_
