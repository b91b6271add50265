"""The gateway's own web pages: the live jobs page here, GraphiQL in app.web.graphiql.

Our files (app/web/static, app/web/templates) are part of the package; third-party
ones come with the wheel, or from a checkout's node_modules (app.web.assets). `/` redirects to `/jobs`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.settings import Settings
from app.web import assets
from app.web.graphiql import page

STATIC = Path(__file__).parent / "static"
logger = logging.getLogger(__name__)


def routes(settings: Settings, node_modules: Path = assets.LOCATION) -> list[BaseRoute]:
    """The pages and their files; logs one line on how to install missing files."""
    if hint := assets.install_hint(node_modules):
        logger.warning(hint)

    async def jobs_page(request: Request) -> Response:
        return page("jobs.html", settings)

    async def home(request: Request) -> Response:
        # Relative, so it holds behind a proxy that mounts the gateway under a prefix.
        return RedirectResponse("jobs", status_code=302)

    return [
        Route("/", home),
        Route("/jobs", jobs_page),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *assets.mounts(node_modules),
    ]
