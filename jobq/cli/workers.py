"""Commands that run and stop supervisors: worker start, worker stop."""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from ..core.config import parse_duration
from .app import EXIT_UNFINISHED, EXIT_USAGE, CliError, Context, api_errors, main, pass_ctx


# -- workers -----------------------------------------------------------------------------
@main.group()
def worker() -> None:
    """Run or stop supervisors."""


@worker.command("start")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Worker processes (default: the core count).")
@click.option("-q", "--queue", "queues", multiple=True, help="Serve this queue (repeatable; default: every queue).")
@click.option("--burst", is_flag=True, help="Exit 0 once no job is due and none of ours is running.")
@click.option("--grace", help="On SIGTERM/SIGINT, let running jobs finish this long (default 30s).")
@click.option("--max-jobs-per-worker", type=click.IntRange(min=1), help="Replace a worker after this many jobs.")
@click.option("--max-memory-per-worker", type=click.IntRange(min=1), help="Replace a worker above this resident MB.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Default INFO.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="text (default) or json: one JSON object a line.")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="PREFIX",
    help="Run only targets under this module prefix or 'module:function' (repeatable; replaces allowed_targets).",
)
@click.option("--dashboard", "dashboard_at", metavar="[HOST:]PORT", help="Also serve the dashboard from a child process.")
@pass_ctx
def worker_start(
    c: Context,
    concurrency: int | None,
    queues: tuple[str, ...],
    burst: bool,
    grace: str | None,
    max_jobs_per_worker: int | None,
    max_memory_per_worker: int | None,
    log_level: str | None,
    log_format: str | None,
    allow: tuple[str, ...],
    dashboard_at: str | None,
) -> None:
    """Run a supervisor and its workers in the foreground."""
    from ..core.allow import parse_allowed
    from ..runtime.logformat import configure_logging
    from ..runtime.notify import Notifier
    from ..runtime.supervisor import Supervisor
    from .dashboard import with_dashboard

    try:  # checked before the database is opened (or created)
        allowed = parse_allowed(list(allow)) if allow else None
    except ValueError as exc:
        raise CliError(f"--allow: {exc}", EXIT_USAGE) from None
    q = c.queue
    settings = q.settings if allowed is None else q.settings.replace(allowed_targets=allowed)
    configure_logging(log_level or settings.log_level, log_format or settings.log_format, sys.stderr)
    with api_errors():
        grace_seconds = parse_duration(grace) if grace is not None else None
        sup = Supervisor(
            q,
            concurrency=concurrency,
            queues=list(queues) or None,
            burst=burst,
            grace=grace_seconds,
            max_jobs_per_worker=max_jobs_per_worker,
            max_memory_per_worker=max_memory_per_worker,
            settings=settings,
        )
        # systemd's NOTIFY_SOCKET is the supervisor's: workers and their jobs do not inherit it.
        sup.notifier = Notifier.from_env(unset=True)
        code = with_dashboard(c, dashboard_at, sup.run, settings)
    sys.exit(code)


@worker.command("stop")
@click.option("--grace", help="Let running jobs finish this long, then end them (default: each supervisor's own).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Give up waiting after this long (exit 3).")
@pass_ctx
def worker_stop(c: Context, grace: str | None, timeout: float) -> None:
    """Drain and stop the supervisors of this database on this host; exit 0 once they have."""
    q = c.queue
    with api_errors():
        grace_seconds = parse_duration(grace) if grace is not None else None
        host = q.settings.host()
        sups = [s for s in q.live_supervisors() if s.host == host]
    if not sups:
        click.echo("no supervisor of this database is running on this host", err=True)
        return
    for s in sups:
        _send(s.pid, signal.SIGTERM)
    click.echo(f"draining {len(sups)} supervisor(s): {', '.join(str(s.pid) for s in sups)}", err=True)
    start = time.monotonic()
    hurried = False
    while True:
        from ..core.local import LockState, lock_state

        alive = [s for s in sups if lock_state(s.lock_path) == LockState.HELD or _pid_running(s.pid)]
        if not alive:
            click.echo("stopped", err=True)
            return
        elapsed = time.monotonic() - start
        if grace_seconds is not None and elapsed >= grace_seconds and not hurried:
            for s in alive:
                _send(s.pid, signal.SIGINT)  # a second signal: end running jobs now
            hurried = True
        if elapsed >= timeout:
            raise CliError(f"{len(alive)} supervisor(s) still running after {timeout:g}s", EXIT_UNFINISHED)
        time.sleep(0.1)


def _pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
