"""Serving the dashboard with uvicorn: from ``jobq dashboard``, or from a child process of
``jobq worker start --dashboard [HOST:]PORT``."""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import socket
import sys
from typing import Any

from ..core.errors import ValidationError

log = logging.getLogger("jobq.dashboard")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, read_only: bool = False, allowed: list[str] | None = None) -> None:
    """Refuse to serve beyond loopback without a token, or writable without an allow-list
    (:class:`ValidationError`, one line saying why)."""
    if is_loopback(host):
        return
    if not token:
        raise ValidationError(
            "host",
            f"refusing to serve on {host} without a token: give --token, --token-file or JOBQ_DASHBOARD_TOKEN, or bind 127.0.0.1",
        )
    if not read_only and not allowed:
        raise ValidationError(
            "host",
            f"refusing to serve on {host} writable without an allow-list (its POST /api/v1/jobs would run any function): "
            "give --allow PREFIX (or allowed_targets), or serve it --read-only (jobq dashboard)",
        )


def read_token_file(path: str) -> str:
    """The token in the file ``path`` (its first line, surrounding blanks removed)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("token-file", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text:
        raise ValidationError("token-file", f"{path} holds no token")
    return text


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (host 127.0.0.1 by default)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValidationError("dashboard", f"expected [HOST:]PORT, got {text!r}")
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValidationError("port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(queue: Any, sock: socket.socket, token: str | None, read_only: bool, metrics_public: bool = False) -> None:
    """Serve the dashboard of ``queue`` on the bound ``sock`` until SIGTERM/SIGINT. Bound
    beyond loopback, every route needs credentials (``/metrics`` too unless ``metrics_public``)."""
    import uvicorn

    from . import app

    public = not is_loopback(sock.getsockname()[0])
    application = app(queue, token=token, read_only=read_only, public=public, metrics_public=metrics_public)
    config = uvicorn.Config(application, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def _child(db: str, settings: Any, host: str, port: int, token: str | None, read_only: bool, parent: int) -> None:
    from ..client.queue import Queue
    from ..worker.osproc import die_with_parent, set_process_name

    die_with_parent(parent)
    set_process_name("jobq-dashboard")
    sock = bind(host, port)
    print(f"jobq dashboard: {url_of(sock)}", file=sys.stderr, flush=True)
    serve(Queue(db, config=settings), sock, token, read_only)


def start_child(db: str, settings: Any, address: str, token: str | None, read_only: bool = False) -> Any:
    """Start the dashboard in a child process of this one (it dies with it), over the
    supervisor's ``settings`` (its allow-list included); returns the process."""
    host, port = parse_address(address)
    check_bind(host, token, read_only, settings.allowed_targets)
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: nothing of the supervisor's state
    proc = ctx.Process(
        target=_child, args=(db, settings, host, port, token, read_only, os.getpid()), name="jobq-dashboard", daemon=True
    )
    proc.start()
    log.info("dashboard process %s serving %s:%s", proc.pid, host, port)
    return proc


def stop_child(proc: Any) -> None:
    """End the dashboard child started by :func:`start_child`."""
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
