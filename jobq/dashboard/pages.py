"""The HTML pages: overview, jobs, job, groups, group, schedules, queues. Each page has a
live region that the page's script reloads every 2 s (``?fragment=1`` renders it alone).
Jinja2 escapes everything a job carries; the buttons call the JSON API with the session's
CSRF token."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..core import __version__
from ..core.errors import JobNotFound, ValidationError
from ..core.models import FINISHED_STATES, STATES, iso
from ..ops import monitor
from . import views
from .deps import guard_of, queue_of
from .security import session_cookie

router = APIRouter(include_in_schema=False)
_LIVE = {"overview.html", "jobs.html", "job.html", "groups.html", "group.html", "schedules.html", "queues.html"}
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _host_is_loopback(request: Request) -> bool:
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in _LOOPBACK_HOSTS


def render(request: Request, template: str, title: str, **context: Any) -> Response:
    """A page (or, with ``?fragment=1``, its live region alone) with the session's CSRF token.
    A browser gets a session on first sight when no token is set (loopback dashboards)."""
    guard = guard_of(request)
    sid = guard.session_id(request)
    new_session = None
    local = _host_is_loopback(request) and guard.is_local(request)
    if sid is None and not guard.login_needed() and not guard.read_only and local:
        new_session = guard.new_session()
        sid = new_session.split(".", 1)[0]
    fragment = request.query_params.get("fragment") == "1"
    now = time.time()
    base = request.scope.get("root_path", "").rstrip("/")
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "fragment"]
    ctx = {
        "request": request,
        "title": title,
        "base": base,
        "csrf": guard.csrf_for(sid),
        "can_write": sid is not None and not guard.read_only,
        "read_only": guard.read_only,
        "login_needed": guard.login_needed(),
        "db": queue_of(request).path,
        "live_url": f"{request.url.path}?{urlencode([*query, ('fragment', '1')])}",
        "states": STATES,
        "finished_states": FINISHED_STATES,
        "iso": iso,
        "pretty": lambda v: json.dumps(v, indent=2, ensure_ascii=False),
        "now": now,
        "ago": lambda text: views.ago(text, now),
        "exact": views.exact,
        "span": views.span,
        "timing": lambda job: views.timing(job, now),
        "runnable": views.RUNNABLE,
        "retryable": views.RETRYABLE,
        "version": __version__,
        "backend": backend_of(queue_of(request).path),
        **context,
    }
    templates = request.app.state.templates
    name = f"_{template}" if fragment and template in _LIVE else template
    response = templates.TemplateResponse(request, name, ctx)
    response.headers["cache-control"] = "no-store"
    if new_session is not None:
        session_cookie(response, new_session, secure=request.url.scheme == "https")
    return response


def backend_of(path: str) -> str:
    """The store's backend and its library version, for the footer: ``sqlite 3.40.1``."""
    if path.startswith("postgres"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"postgresql (psycopg {version('psycopg')})"
        except PackageNotFoundError:
            return "postgresql"
    import sqlite3

    return f"sqlite {sqlite3.sqlite_version}"


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> Response:
    q = queue_of(request)
    data = monitor.overview(q)
    error = None
    try:
        range_ = monitor.parse_range(request.query_params.get("range"))
    except ValidationError as exc:
        range_, error = "1h", str(exc)
    chosen = (request.query_params.get("queue") or "").strip() or None
    c = monitor.charts(q, range_, chosen)
    picks = {"range": range_, "queue": chosen or ""}
    links = {
        "ranges": [(r, "?" + urlencode({**picks, "range": r})) for r in monitor.RANGES],
        "queues": [("all queues", "?" + urlencode({**picks, "queue": ""}), None)]
        + [(name, "?" + urlencode({**picks, "queue": name}), name) for name in sorted(data["queues"])],
    }
    return render(
        request,
        "overview.html",
        "Overview",
        data=data,
        charts=c,
        chart=views.chart(c["buckets"], c["bucket_seconds"]),
        links=links,
        error=error,
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request) -> Response:
    p = request.query_params
    job_id = (p.get("id") or "").strip()
    if job_id:
        return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/jobs/{job_id.lstrip('#')}", status_code=303)
    error = None
    try:
        f = monitor.filters(p.get("state"), p.get("queue"), p.get("target"), p.get("name"), p.get("contains"))
        page = monitor.jobs_page(queue_of(request), f, monitor.parse_cursor(p.get("before")), monitor.parse_limit(p.get("limit")))
    except ValidationError as exc:
        f, page, error = monitor.Filters(), monitor.JobsPage([], None), str(exc)
    next_url = None
    if page.next is not None:
        next_url = "?" + urlencode([*f.as_dict().items(), ("before", str(page.next))])
    return render(
        request, "jobs.html", "Jobs", page=page, f=f, next_url=next_url, error=error, filter_json=json.dumps(f.as_dict())
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> Response:
    try:
        job = monitor.job_detail(queue_of(request), job_id)
    except JobNotFound as exc:
        return _not_found(request, str(exc))
    tb = (job.get("error") or {}).get("traceback") or ""
    return render(
        request,
        "job.html",
        f"Job {job['id']}",
        job=job,
        timeline=views.timeline(job, time.time()),
        frames=views.frames(tb),
        earlier=[{**e, "frames": views.frames(e.get("traceback") or "")} for e in job.get("errors") or []],
    )


@router.get("/groups", response_class=HTMLResponse)
def groups_page(request: Request) -> Response:
    return render(request, "groups.html", "Groups", groups=monitor.groups(queue_of(request)))


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(request: Request, group_id: str) -> Response:
    try:
        group = monitor.group_detail(queue_of(request), group_id)
    except JobNotFound as exc:
        return _not_found(request, str(exc))
    return render(request, "group.html", f"Group {group_id}", group=group)


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(request: Request) -> Response:
    return render(request, "schedules.html", "Schedules", schedules=monitor.schedules(queue_of(request)))


@router.get("/queues", response_class=HTMLResponse)
def queues_page(request: Request) -> Response:
    return render(request, "queues.html", "Queues", queues=monitor.queues(queue_of(request)), partition_top=monitor.PARTITION_TOP)


def _not_found(request: Request, message: str) -> Response:
    response = render(request, "missing.html", "Not found", message=message)
    response.status_code = 404
    return response
