"""Commands of durable steps (issue 16): ``jobq event send|list|purge``."""

from __future__ import annotations

import json

import click

from .app import EXIT_USAGE, CliError, Context, api_errors, main, one_line, pass_ctx


@main.group()
def event() -> None:
    """Events that jobs wait for with ``jobq.wait_for(KEY)``."""


@event.command("send")
@click.argument("key")
@click.argument("payload", default="null")
@click.option("--json", "as_json", is_flag=True, help='Print {"event": id}.')
@pass_ctx
def send(c: Context, key: str, payload: str, as_json: bool) -> None:
    """Send event KEY with a JSON PAYLOAD (default null) to the job waiting for it, or keep
    it for the next job that waits for KEY."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise CliError(one_line(f"payload: not JSON: {exc}"), EXIT_USAGE) from None
    with api_errors():
        event_id = c.queue.send_event(key, value)
    click.echo(json.dumps({"event": event_id}) if as_json else event_id)


@event.command("list")
@click.option("--key", help="Only events of this key.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_ctx
def list_events(c: Context, key: str | None, limit: int) -> None:
    """Events, newest first, one JSON object a line."""
    with api_errors():
        rows = c.queue.events(key, limit)
    for row in rows:
        click.echo(json.dumps(row))


@event.command("purge")
@click.option("--older-than", default="0s", show_default=True, help="Sent longer ago than this: 7d, 12h.")
@click.option("--consumed-only", is_flag=True, help="Keep events no job has received yet.")
@click.option("--json", "as_json", is_flag=True, help='Print {"purged": n}.')
@pass_ctx
def purge_events(c: Context, older_than: str, consumed_only: bool, as_json: bool) -> None:
    """Delete events (received or not) sent more than --older-than ago."""
    from ..core.config import parse_duration

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise CliError(one_line(f"older_than: {exc}"), EXIT_USAGE) from None
    with api_errors():
        n = c.queue.purge_events(seconds, consumed_only)
    click.echo(json.dumps({"purged": n}) if as_json else f"{n} event(s) purged")
