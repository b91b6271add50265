"""Logging: the two formats (LOG_FORMAT), what each line says of its request, no secrets.

- `text` (the default) is the readable format it always was; `json` writes one object
  per line: time, level, logger, message, and where known the request id, trace id,
  tenant and GraphQL operation of the request it was logged in (`LogContext`).
- Every line, in either format and from every logger (uvicorn's access lines too),
  passes `RedactSecrets`: bearer tokens, JWTs, `token=`-like query parameters and the
  configured secrets themselves are replaced before anything is written.
- `Throttle`: an outage (database, broker, change feed) or a flood of refused
  connections logs once in a while, not one line per failed request or event.

`logging_config` is one `logging.config.dictConfig` for the CLI and uvicorn (which
applies it again in each worker process); plain data, so it can be written to a JSON
file for `uvicorn --log-config`.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


class Throttle:
    """`ready(key)` is true at most once per `every` seconds for each key."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def ready(self, key: str = "") -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        self._last[key] = now
        return True


# --- what a line says of the request it was logged in ----------------------------------


@dataclass
class LogContext:
    """One request's (or WebSocket operation's) facts for its log lines; filled in as
    they become known (the tenant once the token is checked)."""

    request_id: str | None = None
    trace_id: str | None = None
    tenant: str | None = None
    operation: str | None = None


# Set per request by app.request_id.RequestId; one object per request, so what is
# learnt later in the request (tenant, operation) reaches every later line.
LOG_CONTEXT: ContextVar[LogContext | None] = ContextVar("log_context", default=None)


def current() -> LogContext | None:
    return LOG_CONTEXT.get()


def note_tenant(tenant: str) -> None:
    found = LOG_CONTEXT.get()
    if found is not None:
        found.tenant = tenant


def note_operation(operation: str | None) -> None:
    found = LOG_CONTEXT.get()
    if found is not None and operation:
        found.operation = operation[:MAX_OPERATION_CHARS]


MAX_OPERATION_CHARS = 100
# `mutation CreateJob {` or `{ jobs(...`: the type, the name and the first root field,
# read from the document's first 500 characters (best effort: a log line's label).
_OPERATION = re.compile(
    r"\s*(query|mutation|subscription)?\s*([_A-Za-z]\w*)?[^{]*\{\s*(?:[_A-Za-z]\w*\s*:\s*)?([_A-Za-z]\w*)"
)


def operation_label(query: object, operation_name: object = None) -> str | None:
    """What a log line calls a GraphQL operation: `mutation CreateJob`, `query jobs`..."""
    if not isinstance(query, str):
        return None
    found = _OPERATION.match(query[:500])
    if isinstance(operation_name, str) and operation_name:
        kind = found.group(1) if found is not None else None
        return f"{kind or 'query'} {operation_name}" if found is not None else operation_name
    if found is None:
        return None
    kind, name, root = found.groups()
    return f"{kind or 'query'} {name or root}"


@contextmanager
def operation_log(query: object, operation_name: object) -> Iterator[None]:
    """A WebSocket operation's own log context: its connection's, with its operation."""
    found = LOG_CONTEXT.get()
    context = LogContext(found.request_id, found.trace_id, found.tenant) if found else LogContext()
    context.operation = operation_label(query, operation_name)
    token = LOG_CONTEXT.set(context)
    try:
        yield
    finally:
        LOG_CONTEXT.reset(token)


# --- no secret in any line ---------------------------------------------------------------

REDACTED = "[REDACTED]"
_PATTERNS = (
    # `Authorization: Bearer <token>` as text (headers, messages).
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;\\]+"), rf"\1 {REDACTED}"),
    # A JWT anywhere (three base64url parts, the first a JSON header: `eyJ`).
    (re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), REDACTED),
    # Credentials as query parameters or key=value pairs.
    (
        re.compile(
            r"(?i)\b((?:access_|id_|refresh_)?token|authorization|password|secret|api_?key)"
            r"(=|%3D)[^&\s\"'\\]+"
        ),
        rf"\1\2{REDACTED}",
    ),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactSecrets(logging.Filter):
    """Tokens and secrets out of a record's message and arguments, before any formatter.

    Arguments stay a tuple of the same shape (uvicorn's access formatter reads them
    by position); exception text is redacted by the formatters that write it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, self.secrets)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(
                redact(arg, self.secrets) if isinstance(arg, str) else arg for arg in args
            )
        elif isinstance(args, dict):
            record.args = {
                key: redact(value, self.secrets) if isinstance(value, str) else value
                for key, value in args.items()
            }
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


# --- the formats ---------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line (newlines in a message or traceback stay escaped)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            # (Redacted by RedactSecrets already, when the handler has it; again here.)
            "message": redact(record.getMessage(), self.secrets),
        }
        found = LOG_CONTEXT.get()
        if found is not None:
            for name in ("request_id", "trace_id", "tenant", "operation"):
                value = getattr(found, name)
                if value is not None:
                    # The request id may be the client's own (X-Request-ID).
                    line[name] = redact(value, self.secrets)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # (client address, method, path with query, HTTP version, status)
            if len(record.args) == 5:
                _, method, path, _, status = record.args
                line.update(method=method, path=path, status=status)
        if record.exc_info:
            line["exception"] = record.exc_text or redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def logging_config(log_format: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """One dictConfig for the gateway's loggers and uvicorn's, in either format."""
    secrets = list(secrets)
    redacting = {"()": "app.logs.RedactSecrets", "secrets": secrets}
    if log_format == "json":
        formatters: dict[str, Any] = {
            name: {"()": "app.logs.JsonFormatter", "secrets": secrets}
            for name in ("app", "uvicorn", "access")
        }
    else:
        # As before: the app's lines as logging.basicConfig wrote them, uvicorn's as it does.
        formatters = {
            "app": {"format": TEXT_FORMAT},
            "uvicorn": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        }
    access_stream = "ext://sys.stderr" if log_format == "json" else "ext://sys.stdout"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": redacting},
        "formatters": formatters,
        "handlers": {
            name: {
                "class": "logging.StreamHandler",
                "formatter": name,
                "filters": ["redact"],
                "stream": access_stream if name == "access" else "ext://sys.stderr",
            }
            for name in ("app", "uvicorn", "access")
        },
        "root": {"handlers": ["app"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"handlers": ["uvicorn"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "alembic": {"level": "WARNING"},
        },
    }


def configure(log_format: str, secrets: Iterable[str] = ()) -> None:
    logging.config.dictConfig(logging_config(log_format, secrets))
