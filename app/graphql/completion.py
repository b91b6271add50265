"""Compiling a plain selection into one Python function (app.graphql.execution).

The function reads each field's attribute and nests the results itself, converting
the common values inline (a UUID by `str`, an int in range as it is, an enum member
by lookup) and any other value as graphql-core would; anything unusual raises
`NotPlain`, and the object goes through graphql-core's own path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import EnumMeta
from typing import Any, cast

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLString,
)
from graphql.pyutils import Undefined

# Completes a value (raising NotPlain when graphql-core must do it).
Completer = Callable[[Any], Any]
# Completes an object for one selection: source -> {response name: value}.
Plan = Callable[[Any], dict[str, Any]]


class NotPlain(Exception):
    """This object needs graphql-core's own path."""


@dataclass(frozen=True)
class PlainField:
    response_name: str
    attribute: str | None  # read as `source.attribute`, else through `resolve`
    resolve: Completer
    type: GraphQLOutputType
    # The plan of the object (or list item) type's sub-selection; None for leaves.
    sub_plan: Plan | None


# --- completing values ----------------------------------------------------------------


@dataclass
class _Completion:
    """How a value of one type completes.

    `general` always gives graphql-core's answer (or raises NotPlain). `guard` and
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


def compile_plan(fields: list[PlainField], is_awaitable: Callable[[Any], bool]) -> Plan:
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
    """Complete a resolved value as graphql-core would, or raise NotPlain."""
    non_null = isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_

    def check(value: Any) -> bool:
        """False for a null; raise for anything graphql-core must handle itself."""
        if value is None:
            if non_null:
                raise NotPlain
            return False
        if value is Undefined or isinstance(value, Exception) or is_awaitable(value):
            raise NotPlain
        return True

    if isinstance(inner, GraphQLList):
        item = _completion(inner.of_type, is_awaitable, sub_plan)

        def complete_list(value: Any) -> Any:
            if not check(value):
                return None
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise NotPlain
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
                raise NotPlain
            return None
        if value.__class__ not in _PLAIN_VALUES and (
            value is Undefined or isinstance(value, Exception) or is_awaitable(value)
        ):
            raise NotPlain
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise NotPlain
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
