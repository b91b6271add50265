"""Idempotency keys: what a key may be, and what makes two creates "the same request".

A client that sends `createJob` (or `POST /encoding/jobs`) with a key and gets no
answer can send it again with the same key: it gets the job the first one created,
never a second job (`app.jobs.keys.create_job_once` holds the key and the job in
one transaction). Keys are per tenant and remembered for IDEMPOTENCY_KEY_TTL
(24 hours by default); `app.jobs.sweeper` forgets them afterwards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from app.errors import InvalidInput
from app.jobs.model import NewJob, quoted

MAX_KEY_LENGTH = 255
# What a REST client names the key by (the IETF httpapi draft's header) and GraphQL's argument.
HEADER = "Idempotency-Key"
ARGUMENT = "idempotencyKey"
# Seconds a key is remembered unless IDEMPOTENCY_KEY_TTL says otherwise: a day.
DEFAULT_TTL = 86_400


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A checked key and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


def check_key(value: str, field: str = ARGUMENT) -> str:
    """`value` if it is 1-255 printable ASCII characters (space allowed inside, not at
    either end: HTTP drops it there, so the same key could not come both ways)."""
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise InvalidInput(field, f"must be 1 to {MAX_KEY_LENGTH} characters, got {len(value)}")
    if not all(" " <= char <= "~" for char in value):
        raise InvalidInput(field, f"{quoted(value)} holds a character that is not printable ASCII")
    if value != value.strip(" "):
        raise InvalidInput(field, f"{quoted(value)} starts or ends with a space")
    return value


# How errors name the header (`check_key`'s `field`).
HEADER_FIELD = f"{HEADER} header"


def from_header(values: list[str]) -> str | None:
    """The key the `Idempotency-Key` header gives, if any, not yet checked: bare (`abc`,
    as Stripe's API takes it) or as the draft's Structured Field string (`"abc"`), the
    same key either way."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput(HEADER_FIELD, "give it once")
    value = values[0]
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return _unquote(value[1:-1])
    return value


def _unquote(inner: str) -> str:
    # RFC 8941 sf-string: `\"` and `\\` are the only escapes; a bare `"` ends it.
    chars: list[str] = []
    escaped = False
    for char in inner:
        if escaped:
            if char not in '"\\':
                raise InvalidInput(HEADER_FIELD, 'a quoted key escapes only \\" and \\\\')
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            raise InvalidInput(HEADER_FIELD, 'a quoted key must escape " as \\"')
        else:
            chars.append(char)
    if escaped:
        raise InvalidInput(HEADER_FIELD, "a quoted key ends in a lone backslash")
    return "".join(chars)


def fingerprint(new: NewJob) -> str:
    """The request as the job would be created from it, hashed: parsed values, not the
    bytes sent, so key order, whitespace or a UUID's letter case make no difference,
    and GraphQL and REST give the same one. Order of `inputs` matters (it is kept)."""
    normal = {
        "inputs": [str(value) for value in new.inputs],
        "profile": str(new.profile),
        "video": str(new.video),
    }
    text = json.dumps(normal, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"createJob/1 {text}".encode()).hexdigest()


def for_request(key: str, new: NewJob, field: str = ARGUMENT) -> IdempotencyKey:
    return IdempotencyKey(check_key(key, field), fingerprint(new))
