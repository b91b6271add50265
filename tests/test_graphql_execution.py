"""app.graphql.execution: plain fields the short way, with graphql-core's exact answers.

Each query runs twice, on the same schema types, once with strawberry's default
executor and once with `PlainFieldsExecutor`; data and errors (message, path,
locations) must be the same, including where the short way has to step back:
nulls in non-null fields, values a scalar refuses, awaitable values.
"""

from __future__ import annotations

import ast
import asyncio
import enum
import gc
import uuid
import weakref
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from app.graphql.execution import PlainFieldsExecutor

pytestmark = pytest.mark.anyio


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    name: str
    count: int
    maybe: int | None
    required: int
    tags: list[str]
    loose: list[int | None]
    strict: list[int]
    color: Color
    when: datetime
    ident: uuid.UUID

    @strawberry.field
    def doubled(self) -> int:
        return self.count * 2


@strawberry.type
class Box:
    label: str
    item: Item
    items: list[Item]
    maybe_item: Item | None


class OtherUUID(uuid.UUID):
    """A subclass of uuid.UUID, as asyncpg's own UUID class is."""


class Later:
    """An awaitable value (awaitable again and again, as the same object is shared)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from asyncio.sleep(0).__await__()
        return self.value


def _item(index: int, **changes: Any) -> Item:
    values: dict[str, Any] = {
        "name": f"item {index}",
        "count": index,
        "maybe": None if index % 2 else index,
        "required": index,
        "tags": ["a", f"t{index}"],
        "loose": [1, None, index],
        "strict": [index, index + 1],
        "color": Color.RED if index % 2 else Color.BLUE,
        "when": datetime(2016, 3, 3, 13, 36, index, 12751, tzinfo=UTC),
        # A UUID of a class of its own, as a driver may build (asyncpg does).
        "ident": uuid.UUID(int=index) if index % 2 else OtherUUID(int=index),
    }
    values.update(changes)
    return Item(**values)


def _boxes(trouble: str | None) -> list[Box]:
    """Fresh data for each run (an awaitable can be awaited once)."""
    items = [_item(index) for index in range(3)]
    if trouble == "null in non-null field":
        items[1] = _item(1, required=None)
    elif trouble == "null in non-null list":
        items[2] = _item(2, strict=[1, None])
    elif trouble == "value the scalar refuses":
        items[0] = _item(0, count="many")
    elif trouble == "awaitable value":
        items[1] = _item(1, ident=Later(uuid.UUID(int=41)))
    return [
        Box(label="first", item=items[0], items=items, maybe_item=None),
        Box(label="second", item=items[1], items=items[1:], maybe_item=items[2]),
    ]


def _schema(executor: type | None, extensions: list[Any]) -> Callable[..., Any]:
    trouble: list[str | None] = [None]

    @strawberry.type
    class Query:
        @strawberry.field
        def boxes(self) -> list[Box]:
            return _boxes(trouble[0])

        @strawberry.field
        def box(self) -> Box:
            return _boxes(trouble[0])[0]

    schema = strawberry.Schema(
        query=Query,
        extensions=extensions,
        execution_context_class=executor,
    )

    async def run(query: str, problem: str | None = None, **variables: Any) -> Any:
        trouble[0] = problem
        result = await schema.execute(query, variable_values=variables)
        return result.data, [error.formatted for error in result.errors or ()]

    return run


ALL = "name count maybe required tags loose strict color when ident"

QUERIES = {
    "every plain field, nested and in lists": f"{{ boxes {{ label item {{ {ALL} }} items {{ {ALL} }} maybeItem {{ name }} }} }}",
    "aliases and a field asked twice": "{ boxes { a: label label items { n: name name c: count } } }",
    "fragments": "query { boxes { ...B items { ... on Item { name } } } } fragment B on Box { label item { ...I } } fragment I on Item { count tags }",
    "__typename": "{ boxes { __typename items { __typename name } } }",
    "a field with a resolver of its own": "{ boxes { items { name doubled } } }",
    "include and skip": "query($yes: Boolean!) { boxes { label @include(if: $yes) items { name @skip(if: $yes) count } } }",
    "a non-null root": f"{{ box {{ item {{ {ALL} }} items {{ {ALL} }} }} }}",
}
TROUBLES = [
    "null in non-null field",
    "null in non-null list",
    "value the scalar refuses",
    "awaitable value",
]


@pytest.mark.parametrize("name", QUERIES)
async def test_answers_as_graphql_core_does(name: str) -> None:
    default, plain = _schema(None, []), _schema(PlainFieldsExecutor, [])
    expected = await default(QUERIES[name], yes=True)
    assert expected[1] == []
    assert await plain(QUERIES[name], yes=True) == expected


@pytest.mark.parametrize("trouble", TROUBLES)
@pytest.mark.parametrize("query", ["every plain field, nested and in lists", "a non-null root"])
async def test_steps_back_to_graphql_core_for_errors_and_awaitables(
    trouble: str, query: str
) -> None:
    default, plain = _schema(None, []), _schema(PlainFieldsExecutor, [])
    expected = await default(QUERIES[query], trouble)
    if trouble != "awaitable value":
        assert expected[1], "the trouble should be an error"
    assert await plain(QUERIES[query], trouble) == expected


async def test_field_middleware_still_sees_every_field() -> None:
    seen: list[str] = []

    class Spy(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    plain = _schema(PlainFieldsExecutor, [Spy])
    data, errors = await plain("{ box { label item { name count } } }")
    assert not errors and data["box"]["item"] == {"name": "item 0", "count": 0}
    assert seen == ["box", "label", "item", "name", "count"]


async def test_a_page_of_plain_fields_takes_the_short_way() -> None:
    fields: list[str] = []

    class Counting(PlainFieldsExecutor):
        def execute_field(self, parent_type: Any, source: Any, details: Any, *args: Any) -> Any:
            fields.append(details[0].node.name.value)
            return super().execute_field(parent_type, source, details, *args)

    plain = _schema(Counting, [])
    data, errors = await plain(QUERIES["every plain field, nested and in lists"])
    assert not errors and len(data["boxes"][0]["items"]) == 3
    # graphql-core's own path ran only for the root field; 2 boxes x (1 + 11 + 3 x 11
    # + 1) fields went the short way.
    assert fields == ["boxes"]


async def test_an_execution_is_freed_when_it_ends_not_by_the_collector() -> None:
    # graphql-core keeps the executor's own bound methods on it (a reference cycle),
    # so every request's execution state used to wait for the garbage collector.
    executors: list[weakref.ref[PlainFieldsExecutor]] = []

    class Tracked(PlainFieldsExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            executors.append(weakref.ref(self))

    run = _schema(Tracked, [])
    gc.disable()  # until the check: a collection would free them anyway
    try:
        for trouble in (None, "awaitable value"):
            data, errors = await run(QUERIES["every plain field, nested and in lists"], trouble)
            assert data and not errors
        alive = [ref() is not None for ref in executors]
    finally:
        gc.enable()
    assert alive == [False, False]


def test_the_graphql_layer_imports_no_database_driver() -> None:
    # The store hands over Python's own types (a driver's UUID is a uuid.UUID): a driver
    # change or a new engine stays in app/db and app/jobs/store.py.
    drivers = {"asyncpg", "aiosqlite", "sqlite3", "psycopg", "psycopg2"}
    graphql = Path(__file__).resolve().parent.parent / "app" / "graphql"
    found = []
    for path in sorted(graphql.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            else:
                continue
            found += [f"{path.name}: {m}" for m in modules if m.split(".")[0] in drivers]
    assert found == []
