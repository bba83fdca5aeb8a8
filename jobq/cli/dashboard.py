"""``jobq dashboard``: serve the web UI, the JSON HTTP API and /metrics of the database."""

from __future__ import annotations

import os
from collections.abc import Callable

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
@click.option("--token", envvar="JOBQ_DASHBOARD_TOKEN", help="Token for writes (env JOBQ_DASHBOARD_TOKEN).")
@click.option("--read-only", is_flag=True, help="Refuse every write (403).")
@pass_ctx
def dashboard(c: Context, host: str, port: int, token: str | None, read_only: bool) -> None:
    """Serve the dashboard, the JSON API under /api/v1 and /metrics."""
    require_dashboard()
    from ..dashboard.serve import bind, check_bind, serve, url_of

    with api_errors():
        check_bind(host, token)
        q = c.queue
        sock = bind(host, port)
    click.echo(f"jobq dashboard: {url_of(sock)} ({q.path}{', read-only' if read_only else ''})", err=True)
    serve(q, sock, token, read_only)


def with_dashboard(c: Context, address: str | None, run: Callable[[], int]) -> int:
    """``run()``, with the dashboard served from a child process around it when ``address``
    (``[HOST:]PORT``) is given; the child ends when ``run`` returns (or dies with us)."""
    if address is None:
        return run()
    require_dashboard()
    from ..dashboard.serve import start_child, stop_child

    with api_errors():
        proc = start_child(c.queue.path, c.config, address, os.environ.get("JOBQ_DASHBOARD_TOKEN"))
    try:
        return run()
    finally:
        stop_child(proc)
