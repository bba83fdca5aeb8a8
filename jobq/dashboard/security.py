"""Who may write: the API token (``Authorization: Bearer``) or the page's session cookie plus
its CSRF token; ``read_only`` refuses every write with 403. Tokens are compared in constant
time. Every response carries a Content-Security-Policy: scripts and styles from the package only."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "jobq_session"
CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class WriteRefused(Exception):
    """A write without valid credentials (401) or on a read-only dashboard (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Guard:
    """The dashboard's credentials: the API token (None: no bearer access; pages still get a
    session on a loopback-only dashboard), the secret that signs sessions and CSRF tokens."""

    def __init__(self, token: str | None, read_only: bool) -> None:
        self.token = token
        self.read_only = read_only
        self._secret = secrets.token_bytes(32)

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        """A fresh session cookie value: random id and its signature."""
        sid = secrets.token_urlsafe(18)
        return f"{sid}.{self._sign('session:' + sid)}"

    def session_id(self, request: Request) -> str | None:
        """The id of a validly signed session cookie, else None."""
        value = request.cookies.get(SESSION_COOKIE, "")
        sid, _, sig = value.partition(".")
        if sid and sig and hmac.compare_digest(sig, self._sign("session:" + sid)):
            return sid
        return None

    def csrf_for(self, sid: str | None) -> str:
        """The CSRF token bound to the session ``sid`` (empty without a session)."""
        return self._sign("csrf:" + sid) if sid else ""

    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def login_needed(self) -> bool:
        """Whether a browser must give the token before it gets a session (token set)."""
        return self.token is not None

    def check_write(self, request: Request) -> None:
        """Raise :class:`WriteRefused` unless this request may write."""
        if self.read_only:
            raise WriteRefused(403, "this dashboard is read-only")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            if self.token_ok(auth[7:].strip()):
                return
            raise WriteRefused(401, "invalid token")
        sid = self.session_id(request)
        csrf = request.headers.get(CSRF_HEADER, "")
        if sid and csrf and hmac.compare_digest(csrf, self.csrf_for(sid)):
            return
        raise WriteRefused(401, "a write needs 'Authorization: Bearer TOKEN', or the page's session and CSRF token")


def session_cookie(response: Response, value: str, secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, value, httponly=True, samesite="strict", secure=secure, path="/")


class SecurityHeaders:
    """ASGI middleware adding the CSP and friends to every HTTP response, and a
    ``Server-Timing: app;dur=MS`` header: the server's time up to the response's start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in _HEADERS if k not in have)
                headers.append((b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.3f}".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
