"""Log in with the dashboard's token: the browser gets a session cookie (HttpOnly,
SameSite=Strict), and its pages a CSRF token for their buttons."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .deps import guard_of
from .pages import render
from .security import SESSION_COOKIE, WriteRefused, session_cookie

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return render(request, "login.html", "Log in", failed=False, refused=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    guard = guard_of(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    try:
        ok = guard.check_login(request, token)
    except WriteRefused as exc:  # too many failed logins from this address
        response = render(request, "login.html", "Log in", failed=False, refused=exc.message)
        response.status_code = exc.status
        response.headers["retry-after"] = str(exc.retry_after)
        return response
    if not ok:
        response = render(request, "login.html", "Log in", failed=True)
        response.status_code = 401
        return response
    response = RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/", status_code=303)
    session_cookie(response, guard.new_session(), secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
