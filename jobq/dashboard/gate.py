"""The read gate: an ASGI middleware that asks the :class:`~jobq.dashboard.security.Guard`
whether a request may read before any route runs (the OpenAPI document included). A page
refused is the login form with 401; anything else a JSON error."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .security import Guard, WriteRefused


def route_path(scope: Scope) -> str:
    """The request's path below the dashboard's root (a mounted dashboard's prefix removed)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def refusal(request: Request, exc: WriteRefused, page: bool) -> Response:
    """The answer to a refused request: the login form for a page, else ``{"error"}``."""
    headers = {"retry-after": str(exc.retry_after)} if exc.retry_after else {}
    if exc.status == 401:
        headers["www-authenticate"] = 'Bearer realm="jobq"'
    if page:
        from .pages import render

        response = render(request, "login.html", "Log in", failed=False, refused=exc.message)
        response.status_code = exc.status
        response.headers.update(headers)
        return response
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


class ReadGate:
    """Refuses a request that may not read (see :meth:`Guard.check_read`)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = route_path(scope)
        try:
            self.guard.check_read(request, path)
        except WriteRefused as exc:
            page = not (path.startswith("/api/") or path == "/metrics") and request.method in ("GET", "HEAD")
            await refusal(request, exc, page)(scope, receive, send)
            return
        await self.app(scope, receive, send)
