"""Expected failures, named for what went wrong.

Each carries the contract's error code; `app.graphql.errors` and `app.rest` are
the only places that turn them into a GraphQL error or a JSON response.
"""

from __future__ import annotations


class AppError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(AppError):
    """A value is malformed or out of range; `field` names it."""

    code = "BAD_USER_INPUT"
    http_status = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class JobNotFound(AppError):
    code = "NOT_FOUND"
    http_status = 404

    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} not found")


class InvalidTransition(AppError):
    """The state rules forbid this change."""

    code = "CONFLICT"
    http_status = 409


class IdempotencyKeyReused(AppError):
    """An idempotency key already stands for a different create request."""

    code = "CONFLICT"
    http_status = 409


class ProtocolConflict(AppError):
    """A request the transport's state forbids now (graphql-sse: a reservation's stream
    opened twice, an operation id already running)."""

    code = "CONFLICT"
    http_status = 409


class Unauthenticated(AppError):
    """No bearer token, or not one that can be trusted (`InvalidToken`): 401 over HTTP,
    with the challenge `app.auth.challenge` gives."""

    code = "UNAUTHENTICATED"
    http_status = 401


class InvalidToken(Unauthenticated):
    """A bearer token was sent, but it is malformed, expired, wrongly signed or its
    claims are unusable: the client should get a new one (RFC 6750 `invalid_token`)."""


class Forbidden(AppError):
    code = "FORBIDDEN"
    http_status = 403


class MalformedBody(AppError):
    """The request body is not JSON at all (REST answers 400, not 422)."""

    code = "BAD_USER_INPUT"
    http_status = 400


class UnsupportedMediaType(AppError):
    """The body is not declared as JSON (app/media.py): 415, whatever it holds."""

    code = "BAD_REQUEST"
    http_status = 415


class SubscriptionInterrupted(AppError):
    """A subscription can no longer promise every change (its client fell too far
    behind): it ends with this error, and the client subscribes again."""

    code = "SUBSCRIPTION_INTERRUPTED"
    http_status = 503


class Unavailable(AppError):
    """Something the gateway depends on (its database) cannot be reached right now.

    The process stays up and serves again once it is back; the client retries.
    """

    code = "UNAVAILABLE"
    http_status = 503


class NotFound(AppError):
    """Something other than a job that the caller's tenant does not have (a webhook
    endpoint or delivery, a graphql-sse reservation): another tenant's is not found
    either."""

    code = "NOT_FOUND"
    http_status = 404
