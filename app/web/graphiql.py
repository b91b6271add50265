"""GraphiQL from the gateway's own files (app.web.assets), not strawberry's CDN page."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from app.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"

# Every file and connection comes from this origin: the page works offline and a
# page script cannot send a token anywhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@cache
def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def page(name: str, settings: Settings) -> HTMLResponse:
    # The page tells its script whether requests need a token, to open the
    # headers editor (GraphiQL) or the token field (jobs page) up front.
    auth = "open" if settings.open_mode else "token"
    return HTMLResponse(
        template(name).replace("{{auth}}", auth),
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache",
        },
    )


class LocalGraphiQL:
    """Mixin for the GraphQL view: `GET /graphql` with `Accept: text/html`."""

    settings: Settings

    async def render_graphql_ide(self, request: Request) -> Response:
        return page("graphiql.html", self.settings)
