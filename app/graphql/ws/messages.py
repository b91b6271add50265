"""The shape a WebSocket client's message must have, checked before strawberry reads it.

strawberry indexes messages as the protocols' types say they are: a JSON array, a
number, an `id` that is not a string or `variables` that are a list raise inside its
handlers (a traceback in the log, the connection cut, or INTERNAL_SERVER_ERROR).
Here each message is checked first, by the rules of its protocol, and the first
problem is named (`MalformedMessage`: the field and what it must be); the handlers in
app.graphql.ws.handlers answer it as the protocol says a malformed message is answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.errors import InvalidInput


class MalformedMessage(InvalidInput):
    """A message the protocol does not allow; `operation_id` is the operation it is
    about, when it names one (the legacy protocol answers it with an `error` for it)."""

    def __init__(self, field: str, problem: str, operation_id: str | None = None) -> None:
        super().__init__(field, problem)
        self.problem = problem
        self.operation_id = operation_id


# What each optional field of an operation's payload must be when present (or null).
_PAYLOAD_FIELDS: tuple[tuple[str, type, str], ...] = (
    ("variables", dict, "an object or null"),
    ("operationName", str, "a string or null"),
    ("extensions", dict, "an object or null"),
)


def _envelope(message: object) -> Mapping[str, Any]:
    if not isinstance(message, dict):
        raise MalformedMessage("message", "must be a JSON object")
    if not isinstance(message.get("type"), str):
        raise MalformedMessage("type", "required: a string naming the message")
    return message


def _operation_id(message: Mapping[str, Any]) -> str:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not op_id:
        raise MalformedMessage("id", "required: a non-empty string")
    return op_id


def _optional_object(message: Mapping[str, Any], field: str = "payload") -> None:
    value = message.get(field)
    if value is not None and not isinstance(value, dict):
        raise MalformedMessage(field, "must be an object or null")


def _operation_payload(message: Mapping[str, Any]) -> None:
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise MalformedMessage("payload", "required: an object with the operation's `query`")
    if not isinstance(payload.get("query"), str):
        raise MalformedMessage("payload.query", "required: the GraphQL document, a string")
    for field, kind, described in _PAYLOAD_FIELDS:
        value = payload.get(field)
        if value is not None and not isinstance(value, kind):
            raise MalformedMessage(f"payload.{field}", f"must be {described}")


def check_transport(message: object) -> None:
    """A graphql-transport-ws message (its PROTOCOL.md), else MalformedMessage.

    Unknown types pass: strawberry refuses them itself (4400 "Unknown message type")."""
    message = _envelope(message)
    kind = message["type"]
    if kind in ("connection_init", "ping", "pong"):
        _optional_object(message)
    elif kind == "subscribe":
        _operation_id(message)
        _operation_payload(message)
    elif kind == "complete":
        _operation_id(message)


def check_legacy(message: object) -> None:
    """A graphql-ws (subscriptions-transport-ws) message, else MalformedMessage (with
    the operation id of a `start` whose payload is wrong). `connection_init`'s payload
    strawberry checks itself."""
    message = _envelope(message)
    kind = message["type"]
    if kind == "start":
        op_id = _operation_id(message)
        try:
            _operation_payload(message)
        except MalformedMessage as exc:
            raise MalformedMessage(exc.field, exc.problem, op_id) from None
    elif kind == "stop":
        _operation_id(message)
    elif kind not in ("connection_init", "connection_terminate"):
        raise MalformedMessage("type", f"unknown message type {kind[:40]!r}")
