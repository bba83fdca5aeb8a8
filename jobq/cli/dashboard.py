"""``jobq dashboard``: serve the web UI, the JSON HTTP API and /metrics of the database."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from .app import EXIT_USAGE, CliError, Context, api_errors, main, pass_ctx


def require_dashboard() -> None:
    """Exit 2 with the one pip line when the dashboard's extra is missing."""
    from ..dashboard import INSTALL_LINE, missing

    absent = missing()
    if absent:
        raise CliError(f"the dashboard needs {', '.join(absent)}: {INSTALL_LINE}", EXIT_USAGE)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8181, show_default=True, help="Port (0: any free one).")
@click.option("--token", help="The API token (a flag shows in ps: prefer --token-file or JOBQ_DASHBOARD_TOKEN).")
@click.option("--token-file", metavar="PATH", help="Read the token from the first line of this file.")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="PREFIX",
    help="Submits through the API only of targets under this module prefix or 'module:function' (repeatable).",
)
@click.option("--read-only", is_flag=True, help="Refuse every write (403).")
@click.option("--metrics-public", is_flag=True, help="Serve /metrics without credentials beyond loopback.")
@pass_ctx
def dashboard(
    c: Context,
    host: str,
    port: int,
    token: str | None,
    token_file: str | None,
    allow: tuple[str, ...],
    read_only: bool,
    metrics_public: bool,
) -> None:
    """Serve the dashboard, the JSON API under /api/v1 and /metrics.

    Beyond loopback every route needs the token (a bearer token, or a session from /login),
    /metrics too unless --metrics-public; and a writable dashboard needs an allow-list."""
    require_dashboard()
    from ..core.allow import parse_allowed
    from ..dashboard.serve import bind, check_bind, read_token_file, serve, url_of

    if token is not None and token_file is not None:
        raise CliError("--token and --token-file: give one", EXIT_USAGE)
    try:
        allowed = parse_allowed(list(allow)) if allow else None
    except ValueError as exc:
        raise CliError(f"--allow: {exc}", EXIT_USAGE) from None
    with api_errors():
        if token_file is not None:
            token = read_token_file(token_file)
        elif token is None:
            token = os.environ.get("JOBQ_DASHBOARD_TOKEN") or None
        from ..core.config import load_settings

        settings = load_settings(c.config, overrides={"db": c.db})
        if allowed is not None:
            settings = settings.replace(allowed_targets=allowed)
        check_bind(host, token, read_only, settings.allowed_targets)  # before the database is opened (or created)
        q = c.queue
        q.settings = settings.replace(db=q.settings.db)
        sock = bind(host, port)
    click.echo(f"jobq dashboard: {url_of(sock)} ({q.path}{', read-only' if read_only else ''})", err=True)
    serve(q, sock, token, read_only, metrics_public)


def with_dashboard(c: Context, address: str | None, run: Callable[[], int], settings: Any = None) -> int:
    """``run()``, with the dashboard served from a child process around it when ``address``
    (``[HOST:]PORT``) is given; the child ends when ``run`` returns (or dies with us)."""
    if address is None:
        return run()
    require_dashboard()
    from ..dashboard.serve import start_child, stop_child

    with api_errors():
        token = os.environ.get("JOBQ_DASHBOARD_TOKEN") or None
        proc = start_child(c.queue.path, settings or c.queue.settings, address, token)
    try:
        return run()
    finally:
        stop_child(proc)
