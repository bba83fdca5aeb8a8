"""``jobq health``: whether a live supervisor serves the database (for health checks)."""

from __future__ import annotations

import json
import sys
import time

import click

from ..core.config import parse_duration
from ..core.errors import JobqError
from .app import EXIT_USAGE, CliError, Context, main, pass_ctx


@main.command()
@click.option("--queue", help="Only supervisors that serve this queue count.")
@click.option("--max-age", help="Newest heartbeat must be younger than this: 10, 10s, 1m (default: lease_seconds).")
@click.option("--this-host", is_flag=True, help="Only supervisors of this host count (a container's own check).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_ctx
def health(c: Context, queue: str | None, max_age: str | None, this_host: bool, as_json: bool) -> None:
    """Exit 0 and list the live supervisors serving the database (and queue) with a fresh
    heartbeat; exit 1 with the reason when there is none (or the database cannot be read)."""
    from ..ops.health import Health, check_health

    try:
        age = parse_duration(max_age) if max_age is not None else None
    except ValueError as exc:
        raise CliError(f"--max-age: {exc}", EXIT_USAGE) from None
    result: Health | None = None
    try:
        result = check_health(c.db, config=c.config, queue=queue, max_age=age, this_host=this_host)
        reason = result.reason or ""
    except JobqError as exc:  # a bad configuration: still 0/1 for health checkers
        reason = str(exc)
    if as_json:
        if result is None:
            click.echo(json.dumps({"healthy": False, "reason": reason, "supervisors": []}))
        else:
            click.echo(json.dumps(result.to_dict()))
    if result is None or not result.healthy:
        if not as_json:
            click.echo(f"unhealthy: {reason}", err=True)
        sys.exit(1)
    if not as_json:
        for s in result.supervisors:
            queues = ",".join(s.queues) if s.queues else "*"
            age_s = time.time() - s.heartbeat_at
            click.echo(f"{s.id} pid {s.pid} on {s.host}: queues {queues}, {s.concurrency} workers, heartbeat {age_s:.1f}s ago")
