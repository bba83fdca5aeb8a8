"""Who may read and who may write.

- Writes need the API token (``Authorization: Bearer``) or the page's session cookie plus its
  CSRF token; ``read_only`` refuses every write with 403.
- Off loopback (a request that did not both arrive on and come from a loopback address, or
  every request of a dashboard made ``public``), reads need credentials too: the bearer token
  or a session from ``/login``. ``/login`` and the package's static files stay open, and
  ``/metrics`` when ``metrics_public``.
- Failed logins and wrong bearer tokens are counted per client address: past
  :data:`MAX_FAILURES` in :data:`FAILURE_WINDOW` seconds that address gets 429 until the
  window has passed.

Tokens are compared in constant time. Every response carries a Content-Security-Policy:
scripts and styles from the package only."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import deque
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("jobq.dashboard")

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
#: failed logins (or wrong bearer tokens) one client address may make per window
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0


class WriteRefused(Exception):
    """A request without valid credentials (401), on a read-only dashboard (403), or from an
    address past its failed logins (429)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def is_loopback_address(host: str | None) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is a loopback address."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class FailureLimiter:
    """Failed attempts per client address in a sliding window (thread-safe)."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked_for(self, client: str, now: float | None = None) -> int:
        """Seconds until ``client`` may try again (0: it may now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.limit:
                if not times:
                    self._seen.pop(client, None)
                return 0
            return max(1, int(times[0] + self.window - now + 0.999))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._seen) > 10_000:  # bounded: drop the addresses whose failures have aged out
                for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - self.window]:
                    del self._seen[key]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


class Guard:
    """The dashboard's credentials and access rules: the API token (None: no bearer access;
    pages still get a session on a loopback dashboard), the secret that signs sessions and
    CSRF tokens, ``public`` (True: every request needs credentials; False: none for reads;
    None: decided per request by its addresses), ``metrics_public``."""

    def __init__(self, token: str | None, read_only: bool, public: bool | None = None, metrics_public: bool = False) -> None:
        self.token = token
        self.read_only = read_only
        self.public = public
        self.metrics_public = metrics_public
        self.failures = FailureLimiter()
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

    def is_local(self, request: Request) -> bool:
        """Whether the request is on loopback: it arrived on a loopback address from one (or the
        dashboard was told it serves loopback only)."""
        if self.public is not None:
            return not self.public
        server = request.scope.get("server")
        return is_loopback_address(server[0] if server else None) and is_loopback_address(client_of(request))

    def check_login(self, request: Request, given: str) -> bool:
        """Check a token given to ``/login`` (raises :class:`WriteRefused` 429 while the client
        is past its failed attempts); a wrong one counts against the client."""
        self._not_blocked(request)
        if self.token_ok(given):
            return True
        self._failed(request, "login")
        return False

    def _not_blocked(self, request: Request) -> None:
        wait = self.failures.blocked_for(client_of(request))
        if wait:
            raise WriteRefused(429, f"too many failed logins from {client_of(request)}: try again in {wait} s", wait)

    def _failed(self, request: Request, what: str) -> None:
        self.failures.failed(client_of(request))
        log.warning("dashboard: failed %s from %s", what, client_of(request))

    def _bearer(self, request: Request) -> bool | None:
        """True for a valid bearer token, None without one; a wrong one raises 401."""
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        self._not_blocked(request)
        if self.token_ok(auth[7:].strip()):
            return True
        self._failed(request, "bearer token")
        raise WriteRefused(401, "invalid token")

    def check_read(self, request: Request, path: str) -> None:
        """Raise :class:`WriteRefused` (401) unless the request may read ``path`` (relative
        to the dashboard's root)."""
        if self.is_local(request) or path == "/login" or path.startswith("/static/"):
            return
        if path == "/metrics" and self.metrics_public:
            return
        if self._bearer(request) or self.session_id(request):
            return
        raise WriteRefused(401, "this dashboard needs 'Authorization: Bearer TOKEN' or a session from /login")

    def check_write(self, request: Request) -> None:
        """Raise :class:`WriteRefused` unless this request may write."""
        if self.read_only:
            raise WriteRefused(403, "this dashboard is read-only")
        if self._bearer(request):
            return
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
