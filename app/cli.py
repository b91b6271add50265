"""python -m app serve | migrate | check | export-schema | token"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import sys
from collections.abc import Mapping, Sequence

from app import db, logs
from app.net import is_local_host
from app.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway with uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--log-level", default="info", help="uvicorn log level")
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="worker processes (more than one needs BROADCAST_URL at redis:// or postgres://)",
    )
    commands.add_parser("migrate", help="bring the database schema up to date, then exit")
    commands.add_parser(
        "check",
        help="say what is wrong, one line each: database, migrations, broadcast broker "
        "(exit status 1 if anything is)",
    )
    commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    token = commands.add_parser("token", help="print a signed bearer token (needs AUTH_JWT_SECRET)")
    token.add_argument("--tenant", required=True, help="the tenant whose jobs the token reaches")
    token.add_argument(
        "--scope", required=True, help='space-separated scopes, e.g. "jobs:read jobs:write"'
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.add_argument("--subject", help="the `sub` claim (default: a new unique id)")
    args = parser.parse_args(argv)

    if args.command == "export-schema":
        from app.graphql.schema import create_schema

        print(create_schema().as_str())
        return 0

    if args.command == "token":
        return _token(args)

    # Until the settings are read (a bad LOG_FORMAT is said in the readable format).
    logs.configure("text")
    try:
        settings = Settings.from_env()
        log_config = logs.logging_config(settings.log_format, secrets(settings))
        logging.config.dictConfig(log_config)
        if args.command == "migrate":
            applied = asyncio.run(db.migrate(settings))
            print(f"migrated: applied {', '.join(applied)}" if applied else "schema is up to date")
            return 0
        if args.command == "check":
            return _check(settings)
        if settings.open_mode and not is_local_host(args.host):
            raise SettingsError(
                f"refusing --host {args.host}: without AUTH_JWT_SECRET the gateway runs open "
                "and listens on loopback only (127.0.0.1, ::1, localhost)"
            )
        if args.workers > 1 and settings.broadcast_url.startswith("memory:"):
            raise SettingsError(
                f"--workers {args.workers} needs BROADCAST_URL at redis://… or postgres://…: "
                "with memory:// a subscriber hears only the changes made in its own process"
            )
        # Fail here, in one line, rather than in a traceback from inside uvicorn.
        if settings.migrate_on_start:
            applied = asyncio.run(db.migrate(settings))
            if applied:
                logging.getLogger("app").info("database migrated: applied %s", ", ".join(applied))
            # Done once, here: the workers need not each repeat it.
            os.environ["MIGRATE_ON_START"] = "false"
        else:
            asyncio.run(db.check_reachable(settings))
    except (SettingsError, db.DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from app.http_server import uvicorn_options
    from app.metrics import shared_between_workers

    # Several workers keep their metrics in files of a folder made (and removed) here,
    # which each scrape adds up (app/metrics.py); one worker keeps them in memory.
    with shared_between_workers(args.workers):
        uvicorn.run(
            "app.main:app",
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            workers=args.workers,
            # A WebSocket message is held to the same cap as an HTTP body.
            ws_max_size=settings.max_body_bytes,
            # uvicorn's default protocol, with memory bounded against clients that do not
            # read or send 1-byte frames (app/wsprotocol.py; docs/limits.md).
            ws="app.wsprotocol:BoundedWebSocketProtocol",
            # After SIGTERM, requests still running get this long, then are cut: the
            # process exits in bounded time even if a client never finishes its request.
            timeout_graceful_shutdown=settings.shutdown_timeout,
            # LOG_FORMAT for uvicorn's lines too, applied again in each worker process.
            log_config=log_config,
            # Bounds on request heads, and headers on every answer (app/http_server.py).
            **uvicorn_options(settings),
        )
    return 0


def secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """What no log line may show: the configured secrets, the OTLP exporter's header values."""
    env = os.environ if environ is None else environ
    found = [settings.auth_jwt_secret or "", settings.cursor_secret or ""]
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        for pair in (env.get(name) or "").split(","):
            found.append(pair.partition("=")[2].strip())
    # Short values would redact ordinary words; the patterns in app.logs cover tokens.
    return [value for value in found if len(value) >= 8]


def _check(settings: Settings) -> int:
    from app import health

    logging.getLogger("databases").setLevel(logging.WARNING)  # its connect/disconnect lines
    lines = asyncio.run(health.check(settings))
    for line in lines:
        print(line)
    return 1 if any(line.problem for line in lines) else 0


def _token(args: argparse.Namespace) -> int:
    from app.auth import issue_token

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.auth_jwt_secret is None:
        print("error: AUTH_JWT_SECRET is needed to sign tokens; set it first", file=sys.stderr)
        return 2
    try:
        print(
            issue_token(
                settings.auth_jwt_secret, args.tenant, args.scope.split(), args.ttl, args.subject
            )
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _worker_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return int(value)
