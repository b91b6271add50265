"""What a request body must be to be read as JSON: one rule for GraphQL and REST.

A body is read only if its Content-Type says JSON: `application/json` or
`application/<anything>+json`, with no charset or `charset=utf-8`. Anything else,
a missing Content-Type too, is 415: a form or text/plain body is what a page on
another origin can send without a CORS preflight, so it is never taken for a
request. The bytes are then decoded as UTF-8 only (RFC 8259), never guessed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

JSON = "application/json"


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, lower case ("" for none)."""
    return (header or "").split(";", 1)[0].strip().lower()


@lru_cache(maxsize=64)  # clients send the same few headers
def content_type_problem(header: str | None) -> str | None:
    """Why a body with this Content-Type is not read as JSON; None if it is."""
    if header is None or not header.strip():
        return f"Content-Type: must be {JSON} (none given)"
    _, *params = (part.strip() for part in header.split(";"))
    given = media_type(header)
    kind, _, subtype = given.partition("/")
    if given != JSON and not (kind == "application" and subtype.endswith("+json")):
        return f"Content-Type: must be {JSON} (got {given[:100]!r})"
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return f"Content-Type: JSON must be UTF-8 (got charset={charset[:40]!r})"
    return None


def loads(raw: bytes | str) -> Any:
    """The JSON value of a body; ValueError (UnicodeDecodeError is one) or
    RecursionError if it is not UTF-8 JSON. json.loads would also take UTF-16/32
    bytes, guessing their encoding."""
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
