"""How much one GraphQL document may ask: depth, aliases and field selections.

A document is measured in one pass over its text: each definition's own selections
are walked once, and each fragment's measure is computed once and reused at every
spread of it, so the work is linear in the document's size even when fragments
spread each other many times over (`fragment A { ...B ...B } fragment B { ...C ...C }`
asks for 2^N fields in N lines; walking it spread by spread would take as long).

`validate_within_limits` runs this check alone first and graphql-core's rules only
on a document within the limits: some of those rules cost more than the document's
size (comparing every pair of fields with the same name), and a document over the
limits is refused before they run. Every refusal is QUERY_TOO_COMPLEX and names the
setting it is over.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.validation import ASTValidationRule
from graphql.validation.rules import overlapping_fields_can_be_merged
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema import schema as strawberry_schema

from app.graphql.caches import cacheable
from app.graphql.errors import QUERY_TOO_COMPLEX

# Documents whose validation result is kept (as strawberry's ValidationCache does).
VALIDATIONS_KEPT = 128

# graphql-core's OverlappingFieldsCanBeMergedRule compares every pair of fields with
# the same response name in a selection set (and of fragments spread side by side):
# quadratic, 37 ms for 500 copies of one field. It stops with "Validation aborted."
# once a budget is spent, the library's own knob: a module attribute, read at each
# validation, 500,000 units by default (1,000 copies, ~150 ms). A comparison costs 2
# units; GraphiQL's schema query and this API's queries spend none, since they never
# repeat a name. 20,000 units bounds the rule to ~3 ms here.
COMPARISON_BUDGET = 20_000
overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET = COMPARISON_BUDGET


@dataclass(frozen=True)
class Limits:
    """The settings a document must keep within (`Settings.max_query_*`)."""

    depth: int
    aliases: int
    selections: int


def too_long(query: object, max_length: int) -> GraphQLError | None:
    """A document longer than `max_length` characters, refused before it is parsed:
    graphql-core's lexer reads a string literal a character at a time (~0.35 s for
    1 MB), whatever the token cap."""
    if isinstance(query, str) and len(query) > max_length:
        return _too_complex(
            f"document: {len(query)} characters, more than {max_length} (MAX_QUERY_LENGTH)"
        )
    return None


class LimitedParser(ParserCache):
    """strawberry's ParserCache for small documents (`cacheable`), with `too_long`
    checked first and the token cap set (what strawberry's MaxTokensLimiter does): one
    extension, not three (each costs its hooks on every request).

    A document too long is raised here, answered as a pre-execution error over HTTP;
    over WebSocket the plans (app/graphql/ws/plan.py) refuse it before strawberry.
    A document that does not parse is left for strawberry to parse again and report:
    ParserCache parses outside strawberry's handling of parse errors, and over
    WebSocket such a subscription only completed (graphql-transport-ws) or heard
    nothing (graphql-ws).
    """

    def __init__(self, max_length: int, max_tokens: int) -> None:
        super().__init__()
        self.max_length = max_length
        self.max_tokens = max_tokens

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        error = too_long(context.query, self.max_length)
        if error is not None:
            raise error
        context.parse_options["max_tokens"] = self.max_tokens
        if cacheable(context.query):
            try:
                context.graphql_document = self.cached_parse_document(
                    context.query, **context.parse_options
                )
            except GraphQLError:
                pass  # parsed again, once, by strawberry; bounded by the token cap
        yield


class Measure(NamedTuple):
    """Of a definition with its fragments expanded: the deepest field's level (its
    root fields are level 0; -1 with no field at all), its aliases and its fields."""

    depth: int
    aliases: int
    selections: int


_NOTHING = Measure(-1, 0, 0)


class _Own(NamedTuple):
    """A definition's own selections, its spreads not followed: their measure, and the
    fragments it spreads with the level each spread is at."""

    measure: Measure
    spreads: list[tuple[str, int]]


def _own(selection_set: SelectionSetNode) -> _Own:
    # A stack, not recursion: the parser allows nesting deeper than the stack likes.
    depth, aliases, selections = -1, 0, 0
    spreads: list[tuple[str, int]] = []
    stack = [(selection_set, 0)]
    while stack:
        current, level = stack.pop()
        for selection in current.selections:
            if isinstance(selection, FieldNode):
                selections += 1
                aliases += selection.alias is not None
                depth = max(depth, level)
                if selection.selection_set is not None:
                    stack.append((selection.selection_set, level + 1))
            elif isinstance(selection, InlineFragmentNode):
                stack.append((selection.selection_set, level))
            elif isinstance(selection, FragmentSpreadNode):
                spreads.append((selection.name.value, level))
    return _Own(Measure(depth, aliases, selections), spreads)


def _with_spreads(own: _Own, fragments: dict[str, Measure]) -> Measure:
    depth, aliases, selections = own.measure
    for name, level in own.spreads:
        # An unknown fragment, or one that closes a cycle, adds nothing here:
        # graphql-core's rules report those.
        spread = fragments.get(name, _NOTHING)
        if spread.depth >= 0:
            depth = max(depth, level + spread.depth)
        aliases += spread.aliases
        selections += spread.selections
    return Measure(depth, aliases, selections)


class DocumentMeasure(NamedTuple):
    operations: dict[OperationDefinitionNode, Measure]
    # Fragments no operation spreads (an error, but their cost counts all the same).
    unused: dict[str, Measure]


def measure(document: DocumentNode) -> DocumentMeasure:
    """Each operation's measure, and each unused fragment's: linear in the document."""
    owns = {
        definition.name.value: _own(definition.selection_set)
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    fragments: dict[str, Measure] = {}
    # Fragments in dependency order, without recursion (a chain of spreads can be
    # longer than the stack allows): a fragment is measured once the ones it spreads are.
    for root in owns:
        if root in fragments:
            continue
        path = [(root, iter(owns[root].spreads))]
        on_path = {root}
        while path:
            name, spreads = path[-1]
            for spread, _level in spreads:
                if spread in owns and spread not in fragments and spread not in on_path:
                    path.append((spread, iter(owns[spread].spreads)))
                    on_path.add(spread)
                    break
            else:
                path.pop()
                on_path.discard(name)
                fragments[name] = _with_spreads(owns[name], fragments)
    operations: dict[OperationDefinitionNode, Measure] = {}
    spread_by_operations: list[str] = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            own = _own(definition.selection_set)
            operations[definition] = _with_spreads(own, fragments)
            spread_by_operations.extend(name for name, _level in own.spreads)
    used = _reachable(spread_by_operations, owns)
    unused = {name: fragments[name] for name in owns if name not in used}
    return DocumentMeasure(operations, unused)


def _reachable(names: list[str], owns: dict[str, _Own]) -> set[str]:
    """The fragments `names` spread, directly or through others (each walked once)."""
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in seen or name not in owns:
            continue
        seen.add(name)
        stack.extend(spread for spread, _level in owns[name].spreads)
    return seen


def refusals(document: DocumentNode, limits: Limits) -> list[GraphQLError]:
    """The errors of a document over the limits (none if it is within them)."""
    measured = measure(document)
    errors = []
    for operation, cost in measured.operations.items():
        if cost.depth > limits.depth:
            name = operation.name.value if operation.name else "anonymous"
            errors.append(
                _too_complex(
                    f"'{name}' exceeds maximum operation depth of {limits.depth}"
                    f" (MAX_QUERY_DEPTH): its fields nest {cost.depth} levels deep",
                    operation,
                )
            )
    costs = [*measured.operations.values(), *measured.unused.values()]
    aliases = sum(cost.aliases for cost in costs)
    if aliases > limits.aliases:
        errors.append(
            _too_complex(f"{aliases} aliases found. Allowed: {limits.aliases} (MAX_QUERY_ALIASES)")
        )
    selections = sum(cost.selections for cost in costs)
    if selections > limits.selections:
        errors.append(
            _too_complex(
                f"{selections} field selections once fragments are expanded."
                f" Allowed: {limits.selections} (MAX_QUERY_SELECTIONS)"
            )
        )
    return errors


def _too_complex(message: str, node: OperationDefinitionNode | None = None) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": QUERY_TOO_COMPLEX})


def validate_within_limits(
    schema: GraphQLSchema,
    document: DocumentNode,
    limits: Limits,
    rules: Collection[type[ASTValidationRule]],
) -> list[GraphQLError]:
    """The limits alone first; the `rules` only for a document within them.

    The limits are a function rather than a graphql-core rule run with the others:
    `validate` walks the whole document for any rule (11 ms for 1,990 fields, against
    1.2 ms for `refusals`), and a rule cannot stop the others in the same walk.

    The rules run through strawberry's own validation entry point, the one its
    executions call: it adds strawberry's rules (OneOf, Maybe...) to ours, so a rule
    strawberry adds or fixes applies here as it does there. Looked up when called, as
    strawberry itself does.
    """
    return refusals(document, limits) or strawberry_schema.validate_document(
        schema, document, tuple(rules)
    )


# Kept per (schema, document, limits, rules), at most VALIDATIONS_KEPT: ParserCache
# hands back the same document object for the same text, so a repeated query is
# validated once.
cached_validate_within_limits = lru_cache(maxsize=VALIDATIONS_KEPT)(validate_within_limits)


class LimitedValidation(SchemaExtension):
    """Validation for strawberry's executions: the limits, then the rules, kept per document.

    In place of strawberry's ValidationCache, which would run every rule at once; and
    of AddValidationRules: `rules` are added to strawberry's here.
    """

    def __init__(self, limits: Limits, rules: Collection[type[ASTValidationRule]]) -> None:
        super().__init__()
        self.limits = limits
        self.rules = tuple(rules)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None  # validation follows a parse
        # Small documents only are kept (app/graphql/caches.py).
        validate = (
            cached_validate_within_limits if cacheable(context.query) else validate_within_limits
        )
        context.pre_execution_errors = validate(
            context.schema._schema,  # strawberry's name for its graphql-core schema
            context.graphql_document,
            self.limits,
            (*context.validation_rules, *self.rules),
        )
        yield


__all__ = [
    "COMPARISON_BUDGET",
    "LimitedParser",
    "LimitedValidation",
    "Limits",
    "too_long",
    "validate_within_limits",
]
