"""Bearer tokens: who is calling (tenant, scopes), from an `Authorization` header.

`TokenVerifier.verify` is the one check HTTP (GraphQL and REST) and WebSocket
(`connection_init` payload or upgrade header) go through. What each scope allows
is decided where jobs are read and changed, in `app.jobs.service.Jobs`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from app.errors import Forbidden, InvalidToken, Unauthenticated
from app.logs import note_tenant
from app.settings import Settings, public_key_algorithm

READ = "jobs:read"
WRITE = "jobs:write"
REPORT = "jobs:report"
# Create, change and inspect the tenant's webhook endpoints (app.webhooks.service).
MANAGE_WEBHOOKS = "webhooks:manage"
# GET /metrics (app.metrics_endpoint); reaches no job.
METRICS_READ = "metrics:read"
# May send documents outside TRUSTED_DOCUMENTS' manifest (app/graphql/persisted.py).
ADHOC = "graphql:adhoc"
SCOPES = (READ, WRITE, REPORT, MANAGE_WEBHOOKS, METRICS_READ, ADHOC)
ALL_SCOPES = frozenset(SCOPES)

# What every challenge names (RFC 7235 §2.2).
REALM = "jobs"

# The tenant column holds at most this many characters.
MAX_TENANT_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    scopes: frozenset[str]
    subject: str
    # When the token stops being valid (seconds since the epoch); None: never.
    expires: float | None = None


def require(scopes: frozenset[str], scope: str) -> None:
    """The one scope check (jobs in `app.jobs.service`, webhooks in `app.webhooks.service`)."""
    if scope not in scopes:
        raise Forbidden(f"this token lacks the {scope} scope")


# Without a way to verify tokens the gateway serves one tenant, on loopback only.
OPEN_CALLER = Caller(tenant="default", scopes=ALL_SCOPES, subject="open-mode")


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.open = settings.open_mode
        self.audience = settings.auth_jwt_audience
        self.issuer = settings.auth_jwt_issuer
        # The algorithm is picked by the key that verifies it, never by the token
        # alone: an HS256 token is never checked against the public key.
        self.keys: dict[str, Any] = {}
        if settings.auth_jwt_secret is not None:
            self.keys["HS256"] = settings.auth_jwt_secret
        if settings.auth_jwt_public_key is not None:
            self.keys[public_key_algorithm(settings.auth_jwt_public_key)] = (
                settings.auth_jwt_public_key
            )

    def verify(self, authorization: str | None) -> Caller:
        """The caller an `Authorization` header value names; `Unauthenticated` if none."""
        caller = self._verify(authorization)
        # Every later log line of the request names its tenant (app.logs).
        note_tenant(caller.tenant)
        return caller

    def _verify(self, authorization: str | None) -> Caller:
        if self.open:
            return OPEN_CALLER
        if authorization is None:
            raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise Unauthenticated("Authorization must be 'Bearer <token>'")
        if not token:
            raise InvalidToken("Authorization must be 'Bearer <token>'")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise InvalidToken("token is malformed") from None
        key = self.keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None or not isinstance(algorithm, str):
            raise InvalidToken(f"token algorithm {algorithm!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "tenant"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token is invalid: {exc}") from None
        return _caller(claims)


def challenge(error: Unauthenticated) -> dict[str, str]:
    """The header of every HTTP 401, REST and GraphQL alike (RFC 6750 §3).

    A request with no bearer token is told one is needed, with no error code (as the
    RFC asks: it may not have known); a token that was sent and refused (malformed,
    expired, wrongly signed: `InvalidToken`) adds `error="invalid_token"` and why, which
    is what a client's middleware reads to refresh its token and retry.
    """
    value = f'Bearer realm="{REALM}"'
    if isinstance(error, InvalidToken):
        value += f', error="invalid_token", error_description="{_quotable(error.message)}"'
    return {"WWW-Authenticate": value}


def _quotable(text: str) -> str:
    # RFC 6750 §3: error_description is printable ASCII without '"' and '\'.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def _caller(claims: dict[str, Any]) -> Caller:
    tenant, subject, scope = claims["tenant"], claims["sub"], claims.get("scope", "")
    if not isinstance(tenant, str) or not 0 < len(tenant) <= MAX_TENANT_LENGTH:
        raise InvalidToken(f"token claim 'tenant' must be a string of 1..{MAX_TENANT_LENGTH}")
    if not isinstance(subject, str):
        raise InvalidToken("token claim 'sub' must be a string")
    for name, value in (("tenant", tenant), ("sub", subject)):
        if not printable(value):
            raise InvalidToken(f"token claim {name!r} must be printable text")
    if not isinstance(scope, str):
        raise InvalidToken("token claim 'scope' must be a space-separated string")
    # pyjwt compares int(claim) with the time, so it takes "9999999999" too; what it
    # checked must be what a WebSocket's expiry is timed by: a JSON number.
    for name in ("exp", "nbf", "iat"):
        if name in claims and not _numeric_date(claims[name]):
            raise InvalidToken(f"token claim {name!r} must be a number (seconds since 1970)")
    # Scopes meant for other services (an identity provider's "openid" …) are ignored.
    return Caller(
        tenant=tenant,
        scopes=ALL_SCOPES & set(scope.split()),
        subject=subject,
        expires=float(claims["exp"]),
    )


def printable(text: str) -> bool:
    """No control characters (NUL …), lone surrogates (no UTF-8 form: PostgreSQL
    refuses them) or other invisible characters; plain spaces are fine."""
    return text.isprintable()


def _numeric_date(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def issue_token(
    secret: str, tenant: str, scopes: Iterable[str], ttl: int, subject: str | None = None
) -> str:
    """An HS256 token for `tenant` with `scopes`, valid for `ttl` seconds."""
    wanted = list(dict.fromkeys(scopes))
    unknown = [scope for scope in wanted if scope not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; expected some of {', '.join(SCOPES)}")
    if not 0 < len(tenant) <= MAX_TENANT_LENGTH or not printable(tenant):
        raise ValueError(f"tenant must be 1..{MAX_TENANT_LENGTH} printable characters")
    if subject is not None and not printable(subject):
        raise ValueError("subject must be printable text")
    if ttl < 1:
        raise ValueError("ttl must be a positive number of seconds")
    now = int(time.time())
    claims = {
        "sub": subject or f"token-{uuid.uuid4()}",
        "tenant": tenant,
        "scope": " ".join(wanted),
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
