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


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token (:class:`ValidationError`)."""
    if not is_loopback(host) and not token:
        raise ValidationError(
            "host", f"refusing to serve on {host} without a token: give --token or JOBQ_DASHBOARD_TOKEN, or bind 127.0.0.1"
        )


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


def serve(queue: Any, sock: socket.socket, token: str | None, read_only: bool) -> None:
    """Serve the dashboard of ``queue`` on the bound ``sock`` until SIGTERM/SIGINT."""
    import uvicorn

    from . import app

    config = uvicorn.Config(app(queue, token=token, read_only=read_only), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def _child(db: str, config: str | None, host: str, port: int, token: str | None, read_only: bool, parent: int) -> None:
    from ..client.queue import Queue
    from ..worker.osproc import die_with_parent, set_process_name

    die_with_parent(parent)
    set_process_name("jobq-dashboard")
    sock = bind(host, port)
    print(f"jobq dashboard: {url_of(sock)}", file=sys.stderr, flush=True)
    serve(Queue(db, config=config), sock, token, read_only)


def start_child(db: str, config: str | None, address: str, token: str | None, read_only: bool = False) -> Any:
    """Start the dashboard in a child process of this one (it dies with it); returns the process."""
    host, port = parse_address(address)
    check_bind(host, token)
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: nothing of the supervisor's state
    proc = ctx.Process(
        target=_child, args=(db, config, host, port, token, read_only, os.getpid()), name="jobq-dashboard", daemon=True
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
