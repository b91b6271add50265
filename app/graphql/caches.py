"""Caches keyed by a client-sent document hold small documents only.

strawberry's ParserCache, the limits' validation cache (app/graphql/limits.py) and
the fan-out's plans are bounded by count. A cached document keeps its text and its parsed form alive, so 128 documents
of 1 MB each (a big string literal, sent without even a token) held ~750 MiB. This
API's real documents are a few hundred characters; one over `MAX_CACHED_CHARS` is
parsed and validated as if there were no cache and dropped with its request.

So each cache holds at most its count (128) times `MAX_CACHED_CHARS` of text. The
parsed form is at most ~300 bytes per character (a name or an argument every two
characters; measured with tracemalloc), ~0.6 MiB for the largest document kept: ~75
MiB at worst for strawberry's two caches (they hold the same documents) and as much
for the fan-out's plans, while this API's own documents take 5-25 KiB each.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import ParserCache

# Documents longer than this (characters) are never cached.
MAX_CACHED_CHARS = 2048


def cacheable(query: object) -> bool:
    """Whether a document (its text) may be kept after its request."""
    return isinstance(query, str) and len(query) <= MAX_CACHED_CHARS


class DocumentParserCache(ParserCache):
    """strawberry's ParserCache for small documents; strawberry parses the rest itself.

    A document that does not parse is left to strawberry too: ParserCache parses in its
    hook, outside strawberry's handling of parse errors, so over WebSocket the
    subscription only completed (graphql-transport-ws) or said nothing (graphql-ws).
    Left unparsed here, strawberry parses the text itself, reports the error, and the
    error gets its code (a syntax error, or QUERY_TOO_COMPLEX for a document too long
    or deep to parse).
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if cacheable(context.query):
            try:
                context.graphql_document = self.cached_parse_document(
                    context.query, **context.parse_options
                )
            except GraphQLError:
                pass  # parsed again, once, by strawberry; bounded by the token cap
        yield
