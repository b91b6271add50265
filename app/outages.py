"""Which failures mean the database is out of reach (not a bug), and how callers hear it.

A stopped, restarting or overloaded database, a broken connection, a locked or
full SQLite file: each is a state of the world that passes, not a defect. Requests
that meet one fail at once with `Unavailable` (GraphQL `UNAVAILABLE`, REST 503)
instead of a masked internal error, the process stays up, and the connection pool
reconnects on the next request once the database is back.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its error classes are used

from app import metrics
from app.errors import AppError, Unavailable
from app.logs import Throttle

logger = logging.getLogger("app.outages")

# PostgreSQL errors that say the server is going away, starting, out of resources or
# (after a failover) read-only, rather than that the statement was wrong.
_POSTGRES_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, no memory, no slots
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, mid-failover
)

# SQLite primary result codes for a file that is busy, missing, unwritable or full.
_SQLITE_OUTAGES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)

# Seconds between two log lines about the same kind of outage (every failed request
# during an outage would otherwise log one).
LOG_EVERY = 10.0
_by_kind = Throttle(LOG_EVERY)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot serve right now."""
    if isinstance(exc, (OSError, *_POSTGRES_OUTAGES)):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # Raised when a pooled connection the server closed is used again.
        return "connection is closed" in str(exc)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # A query (or the reset before the connection goes back to the pool) under way
        # while the server terminates the connection: "cannot switch to state …;
        # another operation is in progress". The pool discards that connection.
        return "cannot switch to state" in str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_OUTAGES
    return False


def error_kind(exc: BaseException) -> str:
    """What a failed statement that is not an outage met (the `db_errors` metric's kind)."""
    if isinstance(
        exc, (sqlite3.IntegrityError, asyncpg.exceptions.IntegrityConstraintViolationError)
    ):
        return "integrity"
    if isinstance(exc, (TimeoutError, asyncpg.exceptions.QueryCanceledError)):
        return "timeout"
    return "other"


def reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@contextmanager
def database_calls() -> Iterator[None]:
    """Turn an outage met inside the block into `Unavailable`; other errors pass as they are."""
    try:
        yield
    except AppError:  # a domain answer (NOT_FOUND, CONFLICT...), not a failed statement
        raise
    except Exception as exc:
        outage = is_outage(exc)
        metrics.DB_ERRORS.labels("unavailable" if outage else error_kind(exc)).inc()
        if not outage:
            raise
        _log(exc)
        # The client learns what to do; where the database is and why stays in the log.
        raise Unavailable(
            "the database is unavailable right now; try again shortly "
            "(a change whose answer was lost may or may not have been applied: read it back)"
        ) from exc


def _log(exc: BaseException) -> None:
    if _by_kind.ready(type(exc).__name__):
        logger.warning("database unavailable, answering UNAVAILABLE: %s", reason(exc))


class _OneLine(logging.Filter):
    """Logs an expected reconnection failure as one line (its reason), not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_outage(record.exc_info[1]):
            record.msg = f"{record.getMessage()}: {reason(record.exc_info[1])}"
            record.args = ()
            record.exc_info = None
        return True


_ONE_LINE = _OneLine()


def quiet_reconnect_logs() -> None:
    """asyncpg's pool logs a traceback each time it fails to reconnect while the
    database is down (every 1 s to 60 s): keep those to one line each."""
    pool_logger = logging.getLogger("asyncpg.pool")
    if _ONE_LINE not in pool_logger.filters:
        pool_logger.addFilter(_ONE_LINE)
