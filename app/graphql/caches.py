"""Caches keyed by a client-sent document hold small documents only.

The parser cache and the validation cache (`LimitedParser`, `LimitedValidation` in
app/graphql/limits.py) and the fan-out's plans (app/graphql/ws/plan.py) are bounded
by count. A cached document keeps its text and its parsed form alive, so 128 documents
of 1 MB each (a big string literal, sent without even a token) held ~750 MiB. This
API's real documents are a few hundred characters; one over `MAX_CACHED_CHARS` is
parsed and validated as if there were no cache and dropped with its request.

So each cache holds at most its count (128) times `MAX_CACHED_CHARS` of text. The
parsed form is at most ~300 bytes per character (a name or an argument every two
characters; measured with tracemalloc), ~0.6 MiB for the largest document kept: ~75
MiB at worst for the parser and validation caches (they hold the same documents) and as much
for the fan-out's plans, while this API's own documents take 5-25 KiB each.
"""

from __future__ import annotations

# Documents longer than this (characters) are never cached.
MAX_CACHED_CHARS = 2048


def cacheable(query: object) -> bool:
    """Whether a document (its text) may be kept after its request."""
    return isinstance(query, str) and len(query) <= MAX_CACHED_CHARS
