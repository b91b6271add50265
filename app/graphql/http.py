"""GraphQL over HTTP, as the GraphQL-over-HTTP spec says, for the /graphql view.

- The answer's media type follows the Accept header: `application/json` (also for
  no Accept, `*/*` and `application/*`) or `application/graphql-response+json`;
  neither acceptable is 406.
- With `application/graphql-response+json`, a request that fails before execution
  (parse, validation, variable coercion) is 400 (401/403 for auth codes); with
  `application/json` every GraphQL result is 200, errors in the body.
- Such a result has no `data` entry (GraphQL spec: errors before execution).
- Mutations over GET are 405 with `Allow: POST`.
- A request without a valid bearer token is 401 with `WWW-Authenticate` (whatever the
  Accept header), before it runs, unless it asks for introspection only
  (`refuse_unauthenticated`); a scope the token lacks stays an error in the result.
- Requests that are not GraphQL-over-HTTP requests (body not JSON, `query` not a
  string, ...) get a 4xx with a GraphQL-shaped body: `{"errors": [{"message",
  "extensions": {"code"}}]}`, the code assigned in `app.graphql.errors`.

`GraphQLOverHTTP` holds only these HTTP rules; `view.GraphQLView` inherits it and
adds the context and WebSocket behaviour.
"""

from __future__ import annotations

from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.graphql import OperationType

from app import media
from app.auth import challenge
from app.errors import AppError, InvalidInput, MalformedBody, UnsupportedMediaType
from app.graphql.anonymous import introspection_only
from app.graphql.context import Context
from app.graphql.errors import assign_code
from app.graphql.persisted import PersistedDocuments
from app.graphql.prepared import PreparedOperations
from app.graphql.request import RequestData, RequestRefused, checked_parameters, get_parameters
from app.logs import note_operation, operation_label

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"

# Status of a failed request (no `data`) under application/graphql-response+json,
# by the code app.graphql.errors gave its first error; any other code is 400.
_REQUEST_ERROR_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "INTERNAL_SERVER_ERROR": 500}


class BadRequest(AppError):
    """The HTTP exchange itself is wrong: method, media types, operation kind."""

    code = "BAD_REQUEST"
    http_status = 400


class NoGraphiQL(AppError):
    code = "NOT_FOUND"
    http_status = 404

    def __init__(self) -> None:
        super().__init__(
            "GraphiQL is switched off here (GRAPHIQL=false); send GraphQL requests,"
            " e.g. GET /graphql?query={__typename}"
        )


def negotiate(accept: str | None) -> str | None:
    """The media type to answer in, from the Accept header; None if neither of ours.

    The highest q wins; at equal q the range listed first. Wildcards mean
    application/json (the spec's default), unless the client excluded it with q=0.
    """
    if not accept or not accept.strip():
        return JSON
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media_range.lower(), q))
    excluded = {media_range for media_range, q in ranges if q <= 0}
    best: str | None = None
    best_q = 0.0
    for media_range, q in ranges:
        if media_range in (JSON, GRAPHQL_RESPONSE):
            candidate: str | None = media_range
        elif media_range in ("*/*", "application/*"):
            candidate = next((t for t in (JSON, GRAPHQL_RESPONSE) if t not in excluded), None)
        else:
            candidate = None
        if candidate is not None and q > best_q:
            best, best_q = candidate, q
    return best


def refuse_unauthenticated(
    context: Context, request_data: GraphQLRequestData | list[GraphQLRequestData]
) -> None:
    """Raise a 401 `RequestRefused` if this request may not run for want of a caller.

    The one check of GraphQL over HTTP (POST, GET, batches, streamed subscriptions),
    made before anything runs: a missing, malformed or expired token gets 401 with the
    `UNAUTHENTICATED` error and `WWW-Authenticate` (app.auth.challenge), so clients'
    refresh-on-401 middleware fires. Introspection alone needs no token (tools read the
    schema before they hold one: app.graphql.anonymous).
    """
    if context.caller is not None:
        return
    settings = context.settings
    documents = request_data if isinstance(request_data, list) else [request_data]
    if all(
        isinstance(data.query, str)
        and introspection_only(data.query, settings.max_query_length, settings.max_query_tokens)
        for data in documents
    ):
        return
    error = context.unauthenticated()
    raise RequestRefused(error.http_status, error, challenge(error))


def is_request_error(result: ExecutionResult) -> bool:
    """True when the operation never ran: every error came before execution.

    Errors raised while resolving fields carry a `path`; a null `data` from such an
    error (a non-null root field failing) is an execution result, not this.
    """
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def error_body(error: AppError) -> dict[str, Any]:
    graphql_error = GraphQLError(error.message, original_error=error)
    assign_code(graphql_error, None)
    return {"errors": [graphql_error.formatted]}


class GraphQLOverHTTP(GraphQL[Context, None]):
    """The HTTP half of the /graphql view (the WebSocket half is strawberry's)."""

    # Persisted operations, and prepared ones (None: FAST_PATHS off): the view sets them.
    persisted: PersistedDocuments
    prepared: PreparedOperations | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        response = await self._respond(Request(scope, receive))
        await response(scope, receive, send)

    def should_render_graphql_ide(self, request: Any) -> bool:
        if request.method != "GET":  # asked twice per request; a POST never is a page
            return False
        # A GET naming a persisted document (no `query`) is a GraphQL request, not a page.
        params = request.query_params
        if any(params.get(name) for name in ("extensions", "documentId", "doc_id")):
            return False
        return bool(super().should_render_graphql_ide(request))

    async def _respond(self, request: Request) -> Response:
        if self.should_render_graphql_ide(self.request_adapter_class(request)):
            return await self._run(request, JSON)
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            return self._refusal(
                RequestRefused(
                    406,
                    BadRequest(
                        f"Accept: answers are {JSON} or {GRAPHQL_RESPONSE}; subscriptions "
                        "also stream as text/event-stream (graphql-sse) or multipart/mixed;"
                        'subscriptionSpec="1.0" (Apollo), or over WebSocket'
                    ),
                ),
                JSON,
            )
        response = await self._run(request, media_type)
        # strawberry answers GraphQL results as application/json; say what we sent.
        if media_type == GRAPHQL_RESPONSE and response.headers.get("content-type") == JSON:
            response.headers["content-type"] = GRAPHQL_RESPONSE
        return response

    async def _run(self, request: Request, media_type: str) -> Response:
        try:
            return await self.run(request)
        except RequestRefused as refused:
            return self._refusal(refused, media_type)
        except HTTPException as exc:  # strawberry's own refusals
            # strawberry's only 404: a browser page asked for while GraphiQL is off.
            error = NoGraphiQL() if exc.status_code == 404 else BadRequest(exc.reason)
            return self._refusal(RequestRefused(exc.status_code, error), media_type)

    def _refusal(self, refused: RequestRefused, media_type: str) -> Response:
        return Response(
            self.encode_json(error_body(refused.error)),
            status_code=refused.status,
            headers=refused.headers,
            media_type=media_type,
        )

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        content_type = media.media_type(request.content_type)
        if self._get_stream_transport_from_headers(request.headers) or (
            request.method == "POST"
            and content_type == "multipart/form-data"
            and self.multipart_uploads_enabled
        ):
            # Streaming subscriptions and uploads, when enabled, are strawberry's.
            return await super().parse_http_body(request)
        if request.method == "GET":
            return get_parameters(request.query_params)
        problem = media.content_type_problem(request.content_type)
        if problem is not None:
            raise RequestRefused(415, UnsupportedMediaType(problem))
        body = await request.get_body()
        try:
            parameters = media.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise RequestRefused(400, MalformedBody(f"body: not valid JSON ({exc})")) from None
        return checked_parameters(parameters)

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        refuse_unauthenticated(context, request_data)
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        query = self.persisted_document(request_data, context)
        # Every later log line of the request names the operation (app.logs).
        note_operation(operation_label(query, request_data.operation_name))
        # strawberry would run a subscription here as if it were a query (and fail on
        # its null result); over plain HTTP it is refused instead.
        allowed = _allowed_operations(request_adapter.method)
        prepared = self.prepared.get(query, request_data.operation_name) if self.prepared else None
        try:
            if prepared is not None and self.prepared is not None:
                result = await self.prepared.execute(
                    prepared,
                    allowed=allowed,
                    context=context,
                    variables=request_data.variables,
                    operation_name=request_data.operation_name,
                    extensions=request_data.extensions,
                )
            else:
                result = await self.schema.execute(
                    query,
                    root_value=root_value,
                    variable_values=request_data.variables,
                    context_value=context,
                    operation_name=request_data.operation_name,
                    allowed_operation_types=allowed,
                    operation_extensions=request_data.extensions,
                )
        except (InvalidOperationTypeError, CannotGetOperationTypeError) as exc:
            raise _refusal_for(exc, request_adapter.method) from exc
        except MissingQueryError:
            raise RequestRefused(400, InvalidInput("query", "is required")) from None
        if (
            is_request_error(result)
            and not sub_response.status_code
            and negotiate(request.headers.get("accept")) == GRAPHQL_RESPONSE
        ):
            code = ((result.errors or [])[0].extensions or {}).get("code")
            sub_response.status_code = _REQUEST_ERROR_STATUS.get(str(code), 400)
        return result

    def persisted_document(self, request_data: GraphQLRequestData, context: Context) -> str | None:
        """The document to run: sent, or named by a persisted id (app.graphql.persisted);
        HTTP streams (app.graphql.streams) resolve theirs here too."""
        name = request_data.persisted if isinstance(request_data, RequestData) else None
        try:
            return self.persisted.resolve(request_data.query, name, context.caller)
        except InvalidInput as exc:
            raise RequestRefused(400, exc) from None
        except AppError as exc:
            raise RequestRefused(exc.http_status, exc) from None

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if is_request_error(result):
            response.pop("data", None)
        return response


def _allowed_operations(method: str) -> set[OperationType]:
    if method == "GET":
        return {OperationType.QUERY}
    return {OperationType.QUERY, OperationType.MUTATION}


def _refusal_for(
    cause: InvalidOperationTypeError | CannotGetOperationTypeError, method: str
) -> RequestRefused:
    if isinstance(cause, InvalidOperationTypeError):
        if cause.operation_type == OperationType.MUTATION and method == "GET":
            return RequestRefused(
                405, BadRequest("mutations are not allowed over GET; use POST"), {"Allow": "POST"}
            )
        if cause.operation_type == OperationType.SUBSCRIPTION:
            return RequestRefused(
                400,
                BadRequest(
                    "subscriptions need a streaming answer: Accept: text/event-stream "
                    '(graphql-sse) or multipart/mixed;subscriptionSpec="1.0" (Apollo), '
                    "or WebSocket at /graphql (graphql-transport-ws or graphql-ws)"
                ),
            )
        return RequestRefused(400, BadRequest(cause.as_http_error_reason(method)))
    if cause.operation_name is None:
        problem = "required when the document has several operations"
    else:
        problem = f"no operation named {cause.operation_name!r} in the document"
    return RequestRefused(400, InvalidInput("operationName", problem))


__all__ = ["GRAPHQL_RESPONSE", "JSON", "GraphQLOverHTTP", "negotiate"]
