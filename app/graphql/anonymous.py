"""Which GraphQL documents may run without a caller: introspection only.

Schema tools (GraphiQL, GraphQL Code Generator, graphql-inspector, IDE plugins) read
the schema before they hold a token, and the schema is public (it is `schema.graphql`
in the repository). Anything else needs a valid bearer token; over HTTP a request
without one is refused before it runs (app.graphql.http.refuse_unauthenticated).
"""

from __future__ import annotations

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)

from app.graphql.limits import too_long

# The root fields every schema answers from its own definition, never from data.
INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


def introspection_only(query: str, max_length: int, max_tokens: int) -> bool:
    """Whether every operation of the document selects introspection fields only.

    A document that is too long or does not parse is not (its request is refused for
    want of a token first, as REST refuses before it reads a body). The caps are
    `MAX_QUERY_LENGTH` and `MAX_QUERY_TOKENS`: parsing a stranger's document costs no
    more than parsing anyone's.
    """
    if too_long(query, max_length) is not None:
        return False
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        return False
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return bool(operations) and all(
        _root_fields_only(operation.selection_set, fragments, set()) for operation in operations
    )


def _root_fields_only(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
) -> bool:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value not in INTROSPECTION_FIELDS:
                return False
        elif isinstance(selection, InlineFragmentNode):
            if not _root_fields_only(selection.selection_set, fragments, seen):
                return False
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None:
                return False
            if name in seen:
                continue  # a cycle: invalid, and validation says so
            seen.add(name)
            if not _root_fields_only(fragment.selection_set, fragments, seen):
                return False
    return True


__all__ = ["INTROSPECTION_FIELDS", "introspection_only"]
