"""Persisted operations over WebSocket: the document a `subscribe`/`start` names.

Both protocols' operation payloads are GraphQL-over-HTTP's parameters, so an
operation may name its document as an HTTP request does (app.graphql.persisted):
`extensions.persistedQuery.sha256Hash`, `documentId` or `doc_id`. The handlers call
`persisted_document` before they check a message: a named document is put in the
payload as its `query`, and strawberry runs it as if it had been sent; a refusal
(not found, not trusted, a hash that does not match) is the operation's `error`.
Before the connection is acknowledged nothing is looked up: strawberry closes it (4401).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from app.errors import AppError
from app.graphql.context import Context
from app.graphql.errors import assign_code


class PersistedOperations:
    """For the two protocol handlers (strawberry's `view`, `context`, `connection_acknowledged`)."""

    view: Any
    context: Context
    connection_acknowledged: bool

    def persisted_document(self, message: object) -> tuple[str, GraphQLError] | None:
        """Resolve a `subscribe`/`start` message's document in place; (id, error) if refused."""
        if (
            not self.connection_acknowledged
            or not isinstance(message, dict)
            or message.get("type") not in ("subscribe", "start")
        ):
            return None
        payload, op_id = message.get("payload"), message.get("id")
        if not isinstance(payload, dict) or not isinstance(op_id, str) or not op_id:
            return None  # malformed: app.graphql.ws.messages names what is wrong
        try:
            query = self.view.persisted.resolve_parameters(payload, self.context.caller)
        except AppError as exc:
            error = GraphQLError(exc.message, original_error=exc)
            assign_code(error, None)
            return op_id, error
        if query is not None:
            payload["query"] = query
        return None
