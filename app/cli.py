"""python -m app serve | migrate | export-schema"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from app import db
from app.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway with uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--log-level", default="info", help="uvicorn log level")
    commands.add_parser("migrate", help="bring the database schema up to date, then exit")
    commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    args = parser.parse_args(argv)

    if args.command == "export-schema":
        from app.graphql.schema import create_schema

        print(create_schema().as_str())
        return 0

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if args.command == "migrate":
            applied = asyncio.run(db.migrate(settings))
            print(f"migrated: applied {', '.join(applied)}" if applied else "schema is up to date")
            return 0
        # Fail here, in one line, rather than in a traceback from inside uvicorn.
        asyncio.run(db.migrate(settings))
    except (SettingsError, db.DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.log_level)
    return 0
