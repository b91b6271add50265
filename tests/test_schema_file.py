"""schema.graphql is the schema the code builds, and GraphiQL documents all of it."""

from __future__ import annotations

import subprocess
import sys

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
)

from app.graphql.schema import create_schema
from support.servers import ROOT


def test_schema_file_matches_the_code() -> None:
    exported = subprocess.run(
        [sys.executable, "-m", "app", "export-schema"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    committed = (ROOT / "schema.graphql").read_text()
    assert exported == committed, (
        "schema.graphql is stale: run `python -m app export-schema > schema.graphql`"
    )


def test_every_type_field_and_argument_has_a_description() -> None:
    schema = create_schema()._schema
    missing: list[str] = []
    for name, graphql_type in schema.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Boolean", "Float", "ID"):
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, d in graphql_type.values.items() if not d.description]
        if isinstance(graphql_type, (GraphQLObjectType, GraphQLInterfaceType)):
            for field_name, field in graphql_type.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [
                    f"{name}.{field_name}({arg})"
                    for arg, definition in field.args.items()
                    if not definition.description
                ]
        if isinstance(graphql_type, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, d in graphql_type.fields.items() if not d.description]
        assert not isinstance(graphql_type, GraphQLScalarType) or graphql_type.description
    assert missing == []
