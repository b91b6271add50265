"""A graphql-core executor that takes a short way through plain fields.

graphql-core completes every field the same way: a resolve-info object, argument
coercion, the resolver, then value completion, each step ready for errors, awaitables
and @defer. For plain fields (`id status progress ...` of 50 jobs, their edges and
nodes) that machinery is most of a request's time: a page of 50 jobs is 500 fields.

A field is plain when it has strawberry's default resolver (an attribute read), no
arguments and no directives, and its type is a scalar, an enum, an object type
without `is_type_of`, or a (non-null) list of these. When every field an object's
selection asks for is plain, and no @defer is involved, `execute_fields` here reads,
coerces and nests them directly. Anything unusual on the way (a null for a non-null
field, a value a scalar refuses, an awaitable, an exception) sends the object back
through graphql-core's own path, which gives exactly the result and errors it always
did: reading attributes twice changes nothing. Field middleware (strawberry
extensions with a `resolve` hook) turns the short way off.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from enum import EnumMeta
from operator import attrgetter
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    is_leaf_type,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

Reader = Callable[[Any], Any]
# What an object's selection reads: (response name, reader) per field; None: not plain.
Plan = list[tuple[str, Reader]] | None


class _NotPlain(Exception):
    """This object needs graphql-core's own path."""


class PlainFieldsExecutor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per grouped field set (graphql-core memoizes them per selection and type, so
        # every item of a list shares one), kept alive with its plan so that its id is
        # not reused during this execution.
        self._plans: dict[int, tuple[object, Plan]] = {}
        manager = self.middleware_manager
        self._plain_allowed = manager is None or not manager.middlewares

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
                    return {name: read(source_value) for name, read in plan}
                except Exception:  # graphql-core's own path gives the right answer
                    pass
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> Plan:
        cached = self._plans.get(id(grouped_field_set))
        if cached is not None:
            return cached[1]
        plan = _plan(self, parent_type, grouped_field_set)
        self._plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan


def _plan(
    executor: PlainFieldsExecutor, parent_type: GraphQLObjectType, grouped_field_set: Any
) -> Plan:
    plan: list[tuple[str, Reader]] = []
    for response_name, field_details_list in grouped_field_set.items():
        for details in field_details_list:
            node = details.node
            if (
                details.defer_usage is not None
                or details.fragment_variable_values is not None
                or node.arguments
                or node.directives
            ):
                return None
        reader = _reader(executor, parent_type, field_details_list)
        if reader is None:
            return None
        plan.append((response_name, reader))
    return plan


# Per schema: (type name, field name) -> how to read and coerce a leaf field, None if
# it is not a plain leaf field.
_LEAF_READERS: WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str], Reader | None]] = (
    WeakKeyDictionary()
)


def _reader(
    executor: PlainFieldsExecutor, parent_type: GraphQLObjectType, field_details_list: Any
) -> Reader | None:
    field_name = field_details_list[0].node.name.value
    if field_details_list[0].node.selection_set is not None:
        return _field_reader(executor, parent_type, field_name, field_details_list)
    readers = _LEAF_READERS.get(executor.schema)
    if readers is None:
        readers = _LEAF_READERS[executor.schema] = {}
    key = (parent_type.name, field_name)
    if key not in readers:
        readers[key] = _field_reader(executor, parent_type, field_name, None)
    return readers[key]


def _field_reader(
    executor: PlainFieldsExecutor,
    parent_type: GraphQLObjectType,
    field_name: str,
    field_details_list: Any,
) -> Reader | None:
    field_def = executor.schema.get_field(parent_type, field_name)
    if field_def is None or field_def.args:
        return None
    resolve = field_def.resolve
    # strawberry marks its resolver of fields without a resolver of their own.
    if resolve is None or not getattr(resolve, "_is_default", False):
        return None
    # Which reads the attribute through the configured default resolver: mostly
    # `getattr`, which `attrgetter` does without a Python call.
    field = field_def.extensions.get("strawberry-definition")
    get: Reader
    if getattr(field, "default_resolver", None) is getattr and not field.base_resolver:  # type: ignore[union-attr]
        get = attrgetter(field.python_name)  # type: ignore[union-attr]
    else:

        def get(source: Any) -> Any:
            return resolve(source, None)

    def sub_plan(object_type: GraphQLObjectType) -> Plan:
        if field_details_list is None or object_type.is_type_of is not None:
            return None
        grouped_field_set, new_defer_usages, *_ = executor.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages:
            return None
        return executor._plan(object_type, grouped_field_set)

    complete = _completer(field_def.type, executor.is_awaitable, sub_plan)
    if complete is None:
        return None

    def read(source: Any) -> Any:
        return complete(get(source))

    return read


def _completer(
    type_: GraphQLOutputType,
    is_awaitable: Callable[[Any], bool],
    sub_plan: Callable[[GraphQLObjectType], Plan],
) -> Reader | None:
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
        item = _completer(inner.of_type, is_awaitable, sub_plan)
        if item is None:
            return None

        def complete_list(value: Any) -> Any:
            if not check(value):
                return None
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise _NotPlain
            return [item(entry) for entry in value]

        return complete_list

    if isinstance(inner, GraphQLObjectType):
        plan = sub_plan(inner)
        if plan is None:
            return None

        def complete_object(value: Any) -> Any:
            if not check(value):
                return None
            return {name: read(value) for name, read in plan}

        return complete_object

    if not is_leaf_type(inner):
        return None
    coerce = inner.coerce_output_value
    names = _enum_names(inner)

    def complete_leaf(value: Any) -> Any:
        if value is None:
            if non_null:
                raise _NotPlain
            return None
        if names is not None and value.__class__ is names[0]:
            name = names[1].get(value)
            if name is not None:
                return name
        if value.__class__ not in _PLAIN_VALUES and (
            value is Undefined or isinstance(value, Exception) or is_awaitable(value)
        ):
            raise _NotPlain
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _NotPlain
        return coerced

    return complete_leaf


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
_PLAIN_VALUES = frozenset({str, int, float, bool, uuid.UUID, datetime, date})
