"""The REST error body, `{"error": {"code", "message"}}`, built in one place.

Routes (app.rest), the app's last-resort handler (app.main) and the middleware
that answers before any route runs (app.middleware) all answer with it; this
module imports nothing of ours, so any of them can use it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The documented REST error object (docs: CONTRACT.md, "Errors")."""
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)
