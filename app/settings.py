"""Settings, read once from the environment into one frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from app.environment import (
    LOG_FORMATS,
    MAX_JOBS_INTERVAL,
    choice,
    flag,
    integer,
    key_ttl,
    poll_interval,
    seconds,
    whole_seconds,
)
from app.environment import (
    SettingsError as SettingsError,
)
from app.environment import (
    traces_exporters as traces_exporters,
)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./jobs.db"
    broadcast_url: str = "memory://"
    # Unset (None): each request's own served address (app/urls.py).
    public_url: str | None = None
    auth_jwt_secret: str | None = None
    # PEM text of an identity provider's RS256/ES256 public key (AUTH_JWT_PUBLIC_KEY
    # holds the PEM itself or a path to a PEM file).
    auth_jwt_public_key: str | None = None
    auth_jwt_audience: str | None = None
    auth_jwt_issuer: str | None = None
    # Seals page cursors (app.jobs.cursors); unset: derived from AUTH_JWT_SECRET.
    cursor_secret: str | None = None
    migrate_on_start: bool = True
    # Most PostgreSQL connections one process holds (SQLite ignores it).
    database_pool_size: int = 10
    # Limits on what one request may ask of the server.
    # Introspection fields count: GraphiQL's schema query nests 14 deep.
    max_query_depth: int = 15
    max_query_aliases: int = 15
    # Fields once fragments are expanded: GraphiQL's schema query has ~230, 15 aliased
    # pages of jobs ~255; past this a document is refused before graphql-core's rules
    # (~12 ms for 990 duplicated fields) run.
    max_query_selections: int = 500
    # Characters in one GraphQL document: a longer one is refused before it is parsed.
    max_query_length: int = 65_536
    # Tokens in one GraphQL document: GraphiQL's schema query has ~190, this API's
    # largest real queries a few hundred; parsing and validating costs ~20 µs a token.
    max_query_tokens: int = 1000
    max_body_bytes: int = 1_048_576
    # HTTP/1.1 request heads (request line and headers): the most bytes, and the
    # seconds a client has to send one (from connecting, or from a request's first
    # byte); the seconds it has to send a whole body. See docs/limits.md.
    max_header_bytes: int = 32_768
    request_header_timeout: int = 10
    request_body_timeout: int = 30
    max_subscriptions_per_connection: int = 20
    # A full garbage collection after every this many bytes received (app/memory.py).
    gc_collect_bytes: int = 8_388_608
    graphql_introspection: bool = True
    graphiql: bool = True
    cors_origins: tuple[str, ...] = ()
    # Seconds requests still running at SIGTERM get to finish before they are cut.
    shutdown_timeout: int = 20
    # WebSocket connections one process holds open at once; past it, refused (1013).
    max_websocket_connections: int = 10_000
    # Subscription streams over HTTP (SSE, multipart, single-connection reservations)
    # one process holds open at once; past it, refused (503).
    max_http_streams: int = 10_000
    # Seconds a WebSocket client has to send `connection_init` (both protocols).
    websocket_init_timeout: int = 60
    # Seconds between two reads of the change feed (app.jobs.changes): a change whose
    # event was lost reaches other processes' subscribers within 2-3 times this.
    change_poll_interval: float = 1.0
    # Seconds a create's idempotency key is remembered (app.jobs.idempotency): a retry
    # within it returns the job the first request created; after it, the key is new.
    idempotency_key_ttl: int = 86_400
    # Webhooks (docs/webhooks.md). Private, loopback and link-local targets, and http://
    # URLs, are refused unless this is on (tests, a private network you trust).
    webhook_allow_private_targets: bool = False
    # Multiplies every wait of the retry schedule (about a day at 1); tests use ~0.001.
    webhook_retry_scale: float = 1.0
    # At most one job.progress per job and endpoint per this many seconds.
    webhook_progress_interval: float = 10.0
    # Seconds between two looks for due deliveries (those of other processes, retries).
    webhook_poll_interval: float = 1.0
    # Seconds to connect to a receiver, and to wait for each read of its answer.
    webhook_connect_timeout: float = 5.0
    webhook_timeout: float = 10.0
    # GET /metrics for anyone (behind a proxy that guards it); else loopback callers and
    # bearer tokens with the metrics:read scope only (app.metrics_endpoint).
    metrics_public: bool = False
    # Seconds a count of jobs by status is served before a scrape counts again (0: every
    # scrape); at a million jobs a count takes 0.2-0.5 s (docs/operations.md#metrics).
    metrics_jobs_interval: int = 60
    # A test hook: exit right after committing a change that finishes a job, before
    # publishing it (fault drills and tests only; never in production).
    test_hook_exit_before_publishing_finish: bool = False
    # Our fast paths (plain-field execution, subscription fan-out, pooled SQLite); off,
    # strawberry's, graphql-core's and `databases`' own paths answer instead. Its default
    # follows FAST_PATHS, unlike every other field's: tests build `Settings(...)` directly,
    # and CI runs them once with FAST_PATHS=false so that both ways stay correct.
    fast_paths: bool = field(default_factory=lambda: _fast_paths_default())
    # Log lines as `text` (readable, the default) or `json` (one object per line).
    log_format: str = "text"
    # Where spans go, from the OpenTelemetry SDK's own variables (`traces_exporters`):
    # `otlp` and/or `console`; empty: tracing is off and nothing of it is installed.
    traces_exporters: tuple[str, ...] = ()
    # Persisted operations (app/graphql/persisted.py, docs/api.md). Documents kept for
    # Apollo's automatic persisted queries, per process (0: APQ off).
    persisted_queries_kept: int = 1000
    # A JSON manifest {id: document}: only its operations run (trusted documents).
    trusted_documents: str | None = None
    # Who may still send other documents when TRUSTED_DOCUMENTS is set: "scope" (tokens
    # with the graphql:adhoc scope, and open mode) or "refuse" (nobody).
    trusted_documents_adhoc: str = "scope"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        settings = cls(
            database_url=env.get("DATABASE_URL") or defaults.database_url,
            broadcast_url=env.get("BROADCAST_URL") or defaults.broadcast_url,
            public_url=(env.get("PUBLIC_URL") or "").strip().rstrip("/") or None,
            auth_jwt_secret=env.get("AUTH_JWT_SECRET") or None,
            auth_jwt_public_key=_public_key(env.get("AUTH_JWT_PUBLIC_KEY") or None),
            auth_jwt_audience=env.get("AUTH_JWT_AUDIENCE") or None,
            auth_jwt_issuer=env.get("AUTH_JWT_ISSUER") or None,
            cursor_secret=env.get("CURSOR_SECRET") or None,
            migrate_on_start=flag(env, "MIGRATE_ON_START", defaults.migrate_on_start),
            database_pool_size=_pool_size(
                env.get("DATABASE_POOL_SIZE"), defaults.database_pool_size
            ),
            max_query_depth=integer(env, "MAX_QUERY_DEPTH", defaults.max_query_depth),
            max_query_aliases=integer(env, "MAX_QUERY_ALIASES", defaults.max_query_aliases),
            max_query_selections=integer(
                env, "MAX_QUERY_SELECTIONS", defaults.max_query_selections
            ),
            max_query_length=integer(env, "MAX_QUERY_LENGTH", defaults.max_query_length),
            max_query_tokens=integer(env, "MAX_QUERY_TOKENS", defaults.max_query_tokens),
            max_body_bytes=integer(env, "MAX_BODY_BYTES", defaults.max_body_bytes),
            max_header_bytes=integer(env, "MAX_HEADER_BYTES", defaults.max_header_bytes),
            request_header_timeout=integer(
                env, "REQUEST_HEADER_TIMEOUT", defaults.request_header_timeout
            ),
            request_body_timeout=integer(
                env, "REQUEST_BODY_TIMEOUT", defaults.request_body_timeout
            ),
            max_subscriptions_per_connection=integer(
                env, "MAX_SUBSCRIPTIONS_PER_CONNECTION", defaults.max_subscriptions_per_connection
            ),
            gc_collect_bytes=integer(env, "GC_COLLECT_BYTES", defaults.gc_collect_bytes),
            graphql_introspection=flag(
                env, "GRAPHQL_INTROSPECTION", defaults.graphql_introspection
            ),
            graphiql=flag(env, "GRAPHIQL", defaults.graphiql),
            cors_origins=tuple(
                origin.strip().rstrip("/")
                for origin in (env.get("CORS_ORIGINS") or "").split(",")
                if origin.strip()
            ),
            shutdown_timeout=integer(env, "SHUTDOWN_TIMEOUT", defaults.shutdown_timeout),
            max_websocket_connections=integer(
                env, "MAX_WEBSOCKET_CONNECTIONS", defaults.max_websocket_connections
            ),
            max_http_streams=integer(env, "MAX_HTTP_STREAMS", defaults.max_http_streams),
            websocket_init_timeout=integer(
                env, "WEBSOCKET_INIT_TIMEOUT", defaults.websocket_init_timeout
            ),
            change_poll_interval=poll_interval(
                env, "CHANGE_POLL_INTERVAL", defaults.change_poll_interval
            ),
            idempotency_key_ttl=key_ttl(env, "IDEMPOTENCY_KEY_TTL", defaults.idempotency_key_ttl),
            webhook_allow_private_targets=flag(
                env, "WEBHOOK_ALLOW_PRIVATE_TARGETS", defaults.webhook_allow_private_targets
            ),
            webhook_retry_scale=seconds(
                env, "WEBHOOK_RETRY_SCALE", defaults.webhook_retry_scale, 0.00001, 10.0
            ),
            webhook_progress_interval=seconds(
                env, "WEBHOOK_PROGRESS_INTERVAL", defaults.webhook_progress_interval, 0.0, 3600.0
            ),
            webhook_poll_interval=seconds(
                env, "WEBHOOK_POLL_INTERVAL", defaults.webhook_poll_interval, 0.05, 60.0
            ),
            webhook_connect_timeout=seconds(
                env, "WEBHOOK_CONNECT_TIMEOUT", defaults.webhook_connect_timeout, 0.1, 60.0
            ),
            webhook_timeout=seconds(env, "WEBHOOK_TIMEOUT", defaults.webhook_timeout, 0.1, 300.0),
            metrics_public=flag(env, "METRICS_PUBLIC", defaults.metrics_public),
            metrics_jobs_interval=whole_seconds(
                env, "METRICS_JOBS_INTERVAL", defaults.metrics_jobs_interval, MAX_JOBS_INTERVAL
            ),
            test_hook_exit_before_publishing_finish=flag(
                env, "TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH", False
            ),
            fast_paths=flag(env, "FAST_PATHS", True),
            log_format=choice(env, "LOG_FORMAT", LOG_FORMATS, defaults.log_format),
            traces_exporters=traces_exporters(env),
            persisted_queries_kept=integer(
                env, "PERSISTED_QUERIES_KEPT", defaults.persisted_queries_kept, minimum=0
            ),
            trusted_documents=env.get("TRUSTED_DOCUMENTS") or None,
            trusted_documents_adhoc=(
                env.get("TRUSTED_DOCUMENTS_ADHOC") or defaults.trusted_documents_adhoc
            )
            .strip()
            .lower(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        _check_database_url(self.database_url)
        _check_broadcast_url(self.broadcast_url)
        public = urlsplit(self.public_url or "http://unset")
        if public.scheme not in ("http", "https") or not public.netloc:
            raise SettingsError(
                f"PUBLIC_URL must be an absolute http(s) URL such as https://api.example.test, "
                f"got {self.public_url!r}"
            )
        if self.auth_jwt_secret is not None:
            _check_secret("AUTH_JWT_SECRET", self.auth_jwt_secret)
        if self.auth_jwt_public_key is not None:
            public_key_algorithm(self.auth_jwt_public_key)
        if self.cursor_secret is not None:
            _check_secret("CURSOR_SECRET", self.cursor_secret)
        elif self.auth_jwt_public_key is not None and self.auth_jwt_secret is None:
            raise SettingsError(CURSOR_SECRET_NEEDED)
        for origin in self.cors_origins:
            _check_origin(origin)
        if self.trusted_documents_adhoc not in ("scope", "refuse"):
            raise SettingsError(
                "TRUSTED_DOCUMENTS_ADHOC must be 'scope' or 'refuse', "
                f"got {self.trusted_documents_adhoc!r}"
            )
        if self.trusted_documents is not None:
            from app.graphql.persisted import load_manifest  # it names Settings

            load_manifest(self.trusted_documents)

    @property
    def open_mode(self) -> bool:
        """No way to verify a token: the server runs open as tenant `default`."""
        return self.auth_jwt_secret is None and self.auth_jwt_public_key is None

    @property
    def tracing(self) -> bool:
        """The OpenTelemetry variables switch traces on (app.tracing)."""
        return bool(self.traces_exporters)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path:
        return Path(urlsplit(self.database_url).path[1:])


def _fast_paths_default() -> bool:
    # Lenient: `from_env` refuses a bad FAST_PATHS value with a SettingsError.
    return os.environ.get("FAST_PATHS", "").strip().lower() not in ("0", "false", "no", "off")


_PLACEHOLDERS = ("change", "replace", "placeholder", "secret", "example", "default", "xxxx")
MIN_SECRET_LENGTH = 32


# Tokens from an identity provider leave no secret of ours to derive the cursor key from.
CURSOR_SECRET_NEEDED = (
    "CURSOR_SECRET must be set when tokens are checked with AUTH_JWT_PUBLIC_KEY alone: "
    "page cursors are sealed with it (a random string of at least 32 characters, "
    "the same in every process)"
)


def _check_secret(name: str, secret: str) -> None:
    lowered = secret.lower()
    if (
        len(secret) < MIN_SECRET_LENGTH
        or len(set(secret)) < 10
        or any(word in lowered for word in _PLACEHOLDERS)
    ):
        raise SettingsError(
            f"{name} must be a random string of at least {MIN_SECRET_LENGTH} characters "
            "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "not a placeholder"
        )


def _public_key(value: str | None) -> str | None:
    if value is None or value.lstrip().startswith("-----BEGIN"):
        return value
    try:
        return Path(value).read_text()
    except OSError as exc:
        raise SettingsError(
            f"AUTH_JWT_PUBLIC_KEY must be a PEM public key or the path of one; "
            f"cannot read {value!r}: {exc.strerror}"
        ) from None


def public_key_algorithm(pem: str) -> str:
    """RS256 for an RSA public key, ES256 for a P-256 one; anything else is refused."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        key = None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise SettingsError(
        "AUTH_JWT_PUBLIC_KEY must be a PEM RSA (2048 bits or more, for RS256) "
        "or P-256 (for ES256) public key"
    )


def _check_origin(origin: str) -> None:
    parts = urlsplit(origin)
    if origin != "*" and (
        parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query
    ):
        raise SettingsError(
            f"CORS_ORIGINS must be a comma-separated list of origins such as "
            f"https://app.example.test (or *), got {origin!r}"
        )


# More than this in one process is a typo or needs a connection pooler in front.
MAX_POOL_SIZE = 1000


def _pool_size(raw: str | None, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_POOL_SIZE:
        raise SettingsError(
            f"DATABASE_POOL_SIZE must be a whole number from 1 to {MAX_POOL_SIZE}, got {raw!r}"
        )
    return int(value)


def _check_database_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else ""
        if parts.netloc or not path or path == ":memory:":
            raise SettingsError(
                f"DATABASE_URL must name a SQLite file as sqlite:///PATH "
                f"(e.g. sqlite:///./jobs.db), got {url!r}"
            )
        return
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname or not parts.path.strip("/"):
            raise SettingsError(f"DATABASE_URL must be postgresql://USER@HOST:PORT/DB, got {url!r}")
        return
    raise SettingsError(f"DATABASE_URL must start with sqlite:/// or postgresql://, got {url!r}")


def _check_broadcast_url(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("memory", "redis", "rediss", "postgres", "postgresql"):
        raise SettingsError(
            f"BROADCAST_URL must be memory://, redis://HOST:PORT or postgres://…, got {url!r}"
        )
