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
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import EnumMeta
from typing import Any, cast
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    is_leaf_type,
)
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.graphql.caches import MAX_CACHED_CHARS

# Completes a value (raising _NotPlain when graphql-core must do it).
Completer = Callable[[Any], Any]
# Completes an object for one selection: source -> {response name: value}.
Plan = Callable[[Any], dict[str, Any]]
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


class _NotPlain(Exception):
    """This object needs graphql-core's own path."""


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


@dataclass(frozen=True)
class _Field:
    response_name: str
    attribute: str | None  # read as `source.attribute`, else through `resolve`
    resolve: Completer
    type: GraphQLOutputType
    # The plan of the object (or list item) type's sub-selection; None for leaves.
    sub_plan: Plan | None


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
        plans = _PLANS[executor.schema] = OrderedDict()
    frozen = tuple(key)
    plan = plans.get(frozen, _UNKNOWN)
    if plan is _UNKNOWN:
        plan = plans[frozen] = _make_plan(executor, parent_type, key)
        if len(plans) > PLANS_KEPT:
            plans.popitem(last=False)
    else:
        plans.move_to_end(frozen)
    return plan  # type: ignore[return-value]


_PLANS: WeakKeyDictionary[GraphQLSchema, OrderedDict[tuple[object, ...], Plan | None]] = (
    WeakKeyDictionary()
)
_UNKNOWN = object()


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
    return _compile(fields, executor.is_awaitable)


def _field(
    schema: GraphQLSchema,
    parent_type: GraphQLObjectType,
    response_name: str,
    field_name: str,
    sub_plan: Plan | None,
) -> _Field | None:
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
    return _Field(response_name, attribute, resolve, field_def.type, sub_plan)


def _named(type_: GraphQLOutputType) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


# --- completing values ----------------------------------------------------------------


@dataclass
class _Completion:
    """How a value of one type completes.

    `general` always gives graphql-core's answer (or raises _NotPlain). `guard` and
    `fast` write Python expressions over a variable for the common case, which gives
    the same answer without a call; they are None where there is no such case.
    """

    general: Completer
    guard: Callable[[_Source, str], str] | None = None
    fast: Callable[[_Source, str], str] | None = None


class _Source:
    """The text of a generated function and the objects its names stand for."""

    def __init__(self) -> None:
        self.names: dict[str, object] = {}
        self._by_id: dict[int, str] = {}
        self.count = 0

    def bind(self, value: object) -> str:
        name = self._by_id.get(id(value))
        if name is None:
            name = self.fresh("_o")
            self._by_id[id(value)] = name
            self.names[name] = value
        return name

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def value(self, completion: _Completion, variable: str) -> str:
        general = f"{self.bind(completion.general)}({variable})"
        if completion.guard is None or completion.fast is None:
            return general
        return (
            f"({completion.fast(self, variable)} "
            f"if {completion.guard(self, variable)} else {general})"
        )


def _compile(fields: list[_Field], is_awaitable: Callable[[Any], bool]) -> Plan:
    source = _Source()
    lines = ["def plan(source):"]
    results = []
    for index, field in enumerate(fields):
        completion = _completion(field.type, is_awaitable, field.sub_plan)
        if field.attribute is not None:
            read = f"source.{field.attribute}"
        else:
            read = f"{source.bind(field.resolve)}(source, None)"
        lines.append(f"    v = {read}")
        lines.append(f"    r{index} = {source.value(completion, 'v')}")
        results.append(f"{field.response_name!r}: r{index}")
    lines.append(f"    return {{{', '.join(results)}}}")
    namespace = dict(source.names)
    exec("\n".join(lines), namespace)  # names bound above, identifiers checked
    return cast(Plan, namespace["plan"])


def _completion(
    type_: GraphQLOutputType, is_awaitable: Callable[[Any], bool], sub_plan: Plan | None
) -> _Completion:
    """Complete a resolved value as graphql-core would, or raise _NotPlain."""
    non_null = isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_

    def check(value: Any) -> bool:
        """False for a null; raise for anything graphql-core must handle itself."""
        if value is None:
            if non_null:
                raise _NotPlain
            return False
        if value is Undefined or isinstance(value, Exception) or is_awaitable(value):
            raise _NotPlain
        return True

    if isinstance(inner, GraphQLList):
        item = _completion(inner.of_type, is_awaitable, sub_plan)

        def complete_list(value: Any) -> Any:
            if not check(value):
                return None
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise _NotPlain
            return [item.general(entry) for entry in value]

        def each(source: _Source, variable: str) -> str:
            entry = source.fresh("_x")
            return f"[{source.value(item, entry)} for {entry} in {variable}]"

        return _Completion(
            complete_list,
            lambda _, v: f"({v}.__class__ is list or {v}.__class__ is tuple)",
            each,
        )

    if isinstance(inner, GraphQLObjectType):
        assert sub_plan is not None
        plan = sub_plan

        def complete_object(value: Any) -> Any:
            if not check(value):
                return None
            return plan(value)

        # An instance of the strawberry type itself is never null, awaitable or an error.
        definition = inner.extensions.get("strawberry-definition")
        origin = getattr(definition, "origin", None)
        if not isinstance(origin, type):
            return _Completion(complete_object)
        return _Completion(
            complete_object,
            lambda s, v: f"{v}.__class__ is {s.bind(origin)}",
            lambda s, v: f"{s.bind(plan)}({v})",
        )

    assert isinstance(inner, GraphQLScalarType | GraphQLEnumType)
    coerce = inner.coerce_output_value
    names = _enum_names(inner)

    def complete_leaf(value: Any) -> Any:
        if value is None:
            if non_null:
                raise _NotPlain
            return None
        if value.__class__ not in _PLAIN_VALUES and (
            value is Undefined or isinstance(value, Exception) or is_awaitable(value)
        ):
            raise _NotPlain
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _NotPlain
        return coerced

    if names is not None:
        enum_class, members = names
        return _Completion(
            complete_leaf,
            lambda s, v: f"{v}.__class__ is {s.bind(enum_class)}",
            lambda s, v: f"{s.bind(members)}[{v}]",
        )
    if inner is GraphQLInt:
        return _Completion(
            complete_leaf,
            lambda _, v: f"({v}.__class__ is int and -2147483648 <= {v} <= 2147483647)",
            lambda _, v: v,
        )
    if inner is GraphQLString or inner is GraphQLID:
        return _Completion(complete_leaf, lambda _, v: f"{v}.__class__ is str", lambda _, v: v)
    if inner is GraphQLBoolean:
        return _Completion(complete_leaf, lambda _, v: f"{v}.__class__ is bool", lambda _, v: v)
    if coerce is str:  # e.g. strawberry's and our UUID scalars
        return _Completion(
            complete_leaf,
            # Any uuid.UUID: a driver may build a subclass of its own (asyncpg does),
            # and str() is what the scalar does with it either way.
            lambda s, v: f"{s.bind(isinstance)}({v}, {s.bind(uuid.UUID)})",
            lambda _, v: f"str({v})",
        )
    return _Completion(complete_leaf)


def _enum_names(type_: Any) -> tuple[type, dict[Any, str]] | None:
    """For a strawberry enum: its Python class and each member's GraphQL name.

    strawberry coerces a member by comparing it with every value in turn (`.value`
    is a slow property on Python enums); this is the same answer, looked up.
    """
    wrapped = getattr(type_, "wrapped_cls", None)
    if not isinstance(type_, GraphQLEnumType) or not isinstance(wrapped, EnumMeta):
        return None
    names: dict[Any, str] = {}
    member: Any
    for member in wrapped:
        for name, value in type_.values.items():
            if member.value == value.value:
                names[member] = name
                break
    return wrapped, names


# Values that are never awaitable, an exception or Undefined: no need to ask.
_PLAIN_VALUES = frozenset({str, int, float, bool, datetime, date, uuid.UUID})
