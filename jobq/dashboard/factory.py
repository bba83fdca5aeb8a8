"""Builds the dashboard application: routers, templates, static files, error mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..client.queue import Queue
from ..core import __version__
from ..core.errors import JobNotFound, StoreError, ValidationError
from . import login, metrics, pages, routes_api, routes_steps
from .gate import ReadGate, refusal
from .security import Guard, SecurityHeaders, WriteRefused

HERE = Path(__file__).resolve().parent


def build(queue: Queue, token: str | None, read_only: bool, public: bool | None = None, metrics_public: bool = False) -> FastAPI:
    """The dashboard app over ``queue`` (see :func:`jobq.dashboard.app`)."""
    application = FastAPI(
        title="jobq",
        version=__version__,
        description="The jobq JSON HTTP API.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the interactive docs load their assets from a CDN
        redoc_url=None,
    )
    application.state.queue = queue
    application.state.guard = guard = Guard(token, read_only, public=public, metrics_public=metrics_public)
    application.state.templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes .html
    application.add_middleware(ReadGate, guard=guard)
    application.add_middleware(SecurityHeaders)  # added last: outermost, so refusals carry the headers too
    application.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    application.include_router(routes_api.router, prefix="/api/v1")
    application.include_router(routes_steps.router, prefix="/api/v1")
    application.include_router(metrics.router)
    application.include_router(login.router)
    application.include_router(pages.router)
    _errors(application)
    return application


def _error(status: int, message: str, fieldname: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if fieldname is not None:
        body["field"] = fieldname
    return JSONResponse(body, status_code=status)


def _errors(application: FastAPI) -> None:
    @application.exception_handler(ValidationError)
    async def invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, str(exc), exc.field)

    @application.exception_handler(JobNotFound)
    async def not_found(request: Request, exc: JobNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @application.exception_handler(StoreError)
    async def store(request: Request, exc: StoreError) -> JSONResponse:
        return _error(503, str(exc))

    @application.exception_handler(WriteRefused)
    async def refused(request: Request, exc: WriteRefused) -> Response:
        return refusal(request, exc, page=False)

    @application.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @application.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        if err.get("type") == "json_invalid":  # never the parser's position
            return _error(422, "body: not valid JSON", "body")
        # a real field: the first name in the location (list indexes and sources are not names)
        loc = [p for p in err.get("loc", ()) if isinstance(p, str) and p not in ("body", "query", "path", "header", "cookie")]
        fieldname = loc[0] if loc else "body"
        return _error(422, f"{fieldname}: {err.get('msg', 'invalid')}", fieldname)
