"""The one place that gives every GraphQL error its `extensions.code`.

Domain failures (`app.errors.AppError`) carry their code. Errors graphql-core
raises before execution get the codes clients know from Apollo: malformed or
wrongly typed values are `BAD_USER_INPUT` (with the argument's path named),
syntax errors `GRAPHQL_PARSE_FAILED`, other invalid documents
`GRAPHQL_VALIDATION_FAILED`; a document over the limits (app.graphql.limits: depth,
aliases, selections, which carry their code; the token cap; the parser's nesting
limit; graphql-core's validation budget) is `QUERY_TOO_COMPLEX`. Anything else is a bug:
`INTERNAL_SERVER_ERROR`, logged with a request id, and masked (`MaskUnexpected`)
so the client sees that id and never the exception's text.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
)
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import InvalidOperationTypeError

from app import logs, metrics
from app.errors import AppError, Unavailable

logger = logging.getLogger("app.graphql")

INTERNAL = "INTERNAL_SERVER_ERROR"
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"

# graphql-core's messages when a document is too big or deep for it: the parser
# stopped at MAX_QUERY_TOKENS (app.graphql.limits) or by its nesting limit (200
# levels, fixed).
_TOO_COMPLEX = re.compile(
    r"^Syntax Error: (Document contains more than \d+ tokens|Document is nested too deeply)"
)

# graphql-core's validation stopped: a rule spent its budget (comparing fields of the
# same name, app.graphql.limits.COMPARISON_BUDGET) or fragments nest too deeply.
_ABORTED = "Validation aborted."
_ABORTED_SAYS = (
    "Validation aborted: the document is too complex to check (too many fields"
    " with the same name to compare, or fragments nested too deeply)"
)

# graphql-core's messages for a value of the wrong shape (literal or variable).
_BAD_VALUE = re.compile(
    r"^(Expected value of type|Expected value of non-null type|Expected variable '\$[^']+' provided"
    r"|Field '[^']+' of required type|Field '[^']+' is not defined"
    r"|Variable '\$[^']+' (has invalid value|got invalid value|of required type"
    r"|of non-null type)|Int cannot represent|Value cannot represent"
    r"|Value '[^']*' does not exist in)"
)


# graphql-core says a null where a non-null type is expected in Python's words ("not to
# be None"); clients sent `null`. Every such message, literal or variable, ends so.
_NOT_NONE = re.compile(r"(non-null type '[^']+') not to be None\.")


def say_null(message: str) -> str:
    """graphql-core's "... non-null type 'Boolean!' not to be None." in GraphQL's words:
    "... non-null type 'Boolean!', found null." (the argument is named by the caller)."""
    return _NOT_NONE.sub(r"\1, found null.", message)


def assign_code(error: GraphQLError, document: DocumentNode | None) -> str:
    """Set `error.extensions["code"]` (and name the argument in value errors); return it."""
    assigned = (error.extensions or {}).get("code")
    if isinstance(assigned, str):
        # Already seen: the validation cache hands the same error objects to every request
        # that repeats a document.
        return assigned
    original = error.original_error
    if isinstance(original, AppError):
        code = original.code
        if isinstance(original, Unavailable):
            metrics.UNAVAILABLE.labels("graphql").inc()
    elif error.path is not None:
        # Raised while resolving a field, and not one of ours: a bug.
        code = INTERNAL
    elif _TOO_COMPLEX.match(error.message):
        code = QUERY_TOO_COMPLEX
    elif error.message == _ABORTED and original is None:
        code = QUERY_TOO_COMPLEX
        error.message = _ABORTED_SAYS
    elif isinstance(original, InvalidOperationTypeError):
        # A query or mutation over the legacy graphql-ws protocol (subscriptions only).
        code = "BAD_REQUEST"
        kind = {"query": "queries", "mutation": "mutations"}.get(
            original.operation_type.value, "operations"
        )
        error.message = (
            f"{kind} are not served over the legacy graphql-ws protocol (subscriptions "
            "only): send them over HTTP or graphql-transport-ws"
        )
    elif (
        original is not None
        and not isinstance(original, GraphQLError)
        and not _BAD_VALUE.match(error.message)
    ):
        # An exception escaped parsing or validation (not a value a scalar refused).
        code = INTERNAL
    elif document is None:
        code = "GRAPHQL_PARSE_FAILED"
    elif _BAD_VALUE.match(error.message):
        code = "BAD_USER_INPUT"
        error.message = say_null(error.message)
        if not error.message.startswith("Variable") and error.nodes:
            where = _argument_path(document, error.nodes[0])
            if where:
                error.message = f"{where}: {error.message}"
    else:
        code = "GRAPHQL_VALIDATION_FAILED"
    error.extensions = {**(error.extensions or {}), "code": code}
    return code


def log_unexpected(error: GraphQLError) -> None:
    """Log a bug with its request's id (X-Request-ID, in every line of the request; a
    fresh one outside a request), which `MaskUnexpected` shows the client."""
    found = logs.current()
    request_id = found.request_id if found and found.request_id else uuid.uuid4().hex
    error.extensions = {**(error.extensions or {}), "requestId": request_id}
    logger.error(
        "unexpected error in %s [request id %s]: %s",
        ".".join(str(part) for part in error.path or ()) or "operation",
        request_id,
        error.message,
        exc_info=error.original_error,
    )


def process_errors(errors: Sequence[GraphQLError], document: DocumentNode | None) -> None:
    """Each error's code assigned, and each unexpected one logged (with its request id)."""
    for error in errors:
        if assign_code(error, document) == INTERNAL:
            log_unexpected(error)


def finish_errors(
    errors: Sequence[GraphQLError], document: DocumentNode | None
) -> list[GraphQLError]:
    """What a result's errors become on strawberry's way: `process_errors`, then masked
    as the MaskUnexpected extension masks them (through its public attributes). For the
    paths that execute without strawberry's pipeline (app.graphql.prepared, the fan-out)."""
    process_errors(errors, document)
    mask = MaskUnexpected()
    return [mask.anonymise_error(e) if mask.should_mask_error(e) else e for e in errors]


def _is_unexpected(error: GraphQLError) -> bool:
    return bool((error.extensions or {}).get("code", INTERNAL) == INTERNAL)


class MaskUnexpected(MaskErrors):
    """Replace an unexpected error's text by its request id; expected errors pass."""

    def __init__(self, should_mask_error: Callable[[GraphQLError], bool] = _is_unexpected) -> None:
        super().__init__(should_mask_error=should_mask_error)

    def _process_result(self, result: object) -> None:
        # strawberry checks `result` against a runtime Protocol, which costs ~15 µs, on
        # every result: once per subscriber for each change a subscription sends.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        request_id = (error.extensions or {}).get("requestId")
        return GraphQLError(
            message=f"internal error (request id {request_id})",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": INTERNAL, "requestId": request_id},
        )


def _argument_path(document: DocumentNode, target: Node) -> str | None:
    """The argument path (`input.inputs[0]`) of a value node inside the document."""
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            found = _in_selections(definition.selection_set, target)
            if found:
                return found
    return None


def _in_selections(selection_set: SelectionSetNode | None, target: Node) -> str | None:
    for selection in (selection_set.selections or ()) if selection_set else ():
        if isinstance(selection, FieldNode):
            for argument in selection.arguments or ():
                for path, node in _walk(argument.name.value, argument.value):
                    if node is target:
                        return path
        found = _in_selections(getattr(selection, "selection_set", None), target)
        if found:
            return found
    return None


def _walk(path: str, value: ValueNode) -> Iterator[tuple[str, Node]]:
    yield path, value
    if isinstance(value, ObjectValueNode):
        for field in value.fields or ():
            yield f"{path}.{field.name.value}", field
            yield from _walk(f"{path}.{field.name.value}", field.value)
    elif isinstance(value, ListValueNode):
        for index, item in enumerate(value.values or ()):
            yield from _walk(f"{path}[{index}]", item)
