"""Commands that manage jobs and queues: cancel, retry, purge, wait, schedules, queues."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from ..core.models import FINISHED_STATES, STATES, iso
from .app import EXIT_FAILED, EXIT_UNFINISHED, EXIT_USAGE, CliError, Context, api_errors, main, pass_ctx

if TYPE_CHECKING:
    from ..client.queue import Queue


# -- management --------------------------------------------------------------------------
@main.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def cancel(c: Context, job_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel jobs: queued ones at once, running ones within a heartbeat."""
    with api_errors():
        out = c.queue.cancel(*job_ids)
    if as_json:
        click.echo(json.dumps({str(k): v for k, v in out.items()}))
    else:
        for job_id, state in out.items():
            click.echo(f"{job_id} {state}")


@main.command()
@click.argument("job_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Requeue every failed job.")
@click.option("--queue", help="With --failed: only this queue.")
@click.option("--include-quarantined", is_flag=True, help="With --failed: the quarantined jobs too.")
@click.option("--from-step", "from_step", help="Run one job (failed, cancelled or succeeded) again from its step NAME.")
@click.option("--json", "as_json", is_flag=True, help='Print {"requeued": [ids]}.')
@pass_ctx
def retry(
    c: Context,
    job_ids: tuple[str, ...],
    failed: bool,
    queue: str | None,
    include_quarantined: bool,
    from_step: str | None,
    as_json: bool,
) -> None:
    """Requeue failed or cancelled jobs (their recorded steps replay; --failed leaves the
    quarantined ones unless told)."""
    if bool(job_ids) == failed:
        raise CliError("give job ids or --failed", EXIT_USAGE)
    if include_quarantined and not failed:
        raise CliError("--include-quarantined goes with --failed", EXIT_USAGE)
    with api_errors():
        ids = c.queue.retry(*job_ids, failed=failed, queue=queue, include_quarantined=include_quarantined, from_step=from_step)
    if as_json:
        click.echo(json.dumps({"requeued": ids}))
        return
    for job_id in ids:
        click.echo(job_id)
    click.echo(f"{len(ids)} job(s) requeued", err=True)


@main.command()
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(FINISHED_STATES),
    help="Only jobs in this state (repeatable; default every finished state).",
)
@click.option("--older-than", default="0s", show_default=True, help="Finished longer ago than this: 7d, 12h.")
@click.option("--json", "as_json", is_flag=True, help='Print {"purged": n}.')
@pass_ctx
def purge(c: Context, states: tuple[str, ...], older_than: str, as_json: bool) -> None:
    """Delete finished jobs."""
    with api_errors():
        n = c.queue.purge(states or FINISHED_STATES, older_than=older_than)
    click.echo(json.dumps({"purged": n}) if as_json else f"{n} job(s) purged")


@main.command()
@click.argument("ident")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 3).")
@pass_ctx
def wait(c: Context, ident: str, timeout: float | None) -> None:
    """Wait for a group (or a job), showing progress: done / total, rate and ETA."""
    from ..client.queue import Group, Job

    q = c.queue
    with api_errors():
        if ident.startswith("g"):
            group = q.group(ident)
            target: Group | Job = group
            total = len(group)
        else:
            target = q.get(ident)
            total = 1
    start = time.monotonic()
    tty = sys.stderr.isatty()
    last_line = 0.0
    while True:
        with api_errors():
            if isinstance(target, Group):
                counts = target.counts()
            else:
                counts = {target.state: 1}
        done = sum(counts.get(s, 0) for s in FINISHED_STATES)
        elapsed = time.monotonic() - start
        now = time.monotonic()
        if tty or now - last_line >= 2 or done >= total:
            line = _progress_line(q, target, done, total, elapsed, counts)
            click.echo(("\r\033[K" + line) if tty else line, err=True, nl=not tty)
            last_line = now
        if done >= total:
            break
        if timeout is not None and elapsed >= timeout:
            if tty:
                click.echo("", err=True)
            click.echo(f"timed out after {timeout:g}s: {done}/{total} finished", err=True)
            sys.exit(EXIT_UNFINISHED)
        time.sleep(0.2)
    if tty:
        click.echo("", err=True)
    bad = counts.get("failed", 0) + counts.get("cancelled", 0)
    if bad:
        click.echo(f"{bad} of {total} failed or cancelled", err=True)
        sys.exit(EXIT_FAILED)


def _progress_line(q: Queue, target: Any, done: int, total: int, elapsed: float, counts: dict[str, int]) -> str:
    from ..client.queue import Job

    if isinstance(target, Job):
        record = q.record(target.id)
        fraction = 1.0 if record.finished else (record.progress or 0.0)
        extra = f" {record.progress_message}" if record.progress_message else ""
        return f"job {target.id}: {record.state} {_bar(fraction)} {fraction:.0%}{extra} {elapsed:.0f}s"
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 and done < total else "-"
    failed = counts.get("failed", 0) + counts.get("cancelled", 0)
    return (
        f"{target.id}: {_bar(done / total if total else 1)} {done}/{total} "
        f"{rate:.1f}/s eta {eta}{f' ({failed} failed)' if failed else ''}"
    )


def _bar(fraction: float, width: int = 30) -> str:
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def schedules(c: Context, as_json: bool) -> None:
    """Periodic jobs: name, target, cron or every, next run."""
    with api_errors():
        items = c.queue.schedules()
    if as_json:
        for s in items:
            click.echo(json.dumps(s.to_dict()))
        return
    for s in items:
        when = f"cron {s.cron!r}" if s.cron else f"every {s.every:g}s"
        click.echo(f"{s.name:<20} {s.target:<30} {when:<22} next {iso(s.next_run_at)}")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Queues with their settings, cap, paused flag and counts; `limit`, `pause`, `resume`."""
    if ctx.invoked_subcommand is not None:
        return
    found = ctx.find_object(Context)
    assert found is not None
    q = found.queue
    with api_errors():
        data = q.status()["queues"]
        controls = {info.name: info for info in q.queues()}
    rows = []
    for name in sorted(set(data) | set(controls)):
        settings = dataclasses.asdict(q.settings.queue_settings(name))
        info = controls.get(name)
        rows.append(
            {
                "queue": name,
                "settings": settings,
                "concurrency": info.concurrency if info else None,
                "paused": bool(info and info.paused),
                "rate": info.rate if info else None,
                "per_partition": info.partition_concurrency if info else None,
                "counts": data.get(name, dict.fromkeys(STATES, 0)),
            }
        )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    for row in rows:
        s = {k: v for k, v in row["settings"].items() if v is not None}
        counts = " ".join(f"{k}={v}" for k, v in row["counts"].items() if v)
        cap = row["concurrency"] if row["concurrency"] is not None else "-"
        paused = "paused" if row["paused"] else "active"
        flow = "".join(f" {k}={row[k]}" for k in ("rate", "per_partition") if row[k] is not None)
        click.echo(f"{row['queue']:<20} {paused:<7} cap={cap:<5}{flow} {json.dumps(s) if s else '{}':<40} {counts}")


@queues.command("limit")
@click.argument("name")
@click.argument("concurrency", required=False)
@click.option("--rate", help="Starts per period across every supervisor: 100/s, 100/m, 100/h; none removes it.")
@click.option("--per-partition", help="Running jobs per partition across every supervisor; none removes it.")
@pass_ctx
def queues_limit(c: Context, name: str, concurrency: str | None, rate: str | None, per_partition: str | None) -> None:
    """Cap how many jobs of queue NAME run at once across every supervisor (`none`: no cap);
    --rate limits how many start per period, --per-partition how many of each partition run."""
    from ..core.limits import parse_rate

    if concurrency is None and rate is None and per_partition is None:
        raise CliError("give CONCURRENCY, --rate or --per-partition", EXIT_USAGE)
    cap = _whole_or_none("concurrency", concurrency, zero_is_none=True)
    per = _whole_or_none("per_partition", per_partition)
    with api_errors():
        parsed = parse_rate(rate) if rate is not None else None  # validated before anything is written
        if concurrency is not None or per_partition is not None:
            c.queue.set_queue_limit(
                name,
                **({"concurrency": cap} if concurrency is not None else {}),
                **({"per_partition": per} if per_partition is not None else {}),
            )
        if rate is not None:
            c.queue.set_queue_rate(name, *(parsed or (None, None)))
    if concurrency is not None:
        click.echo(f"{name}: {'no cap' if cap is None else f'at most {cap} running'}")
    if rate is not None:
        click.echo(f"{name}: {'no rate' if parsed is None else f'at most {parsed[0]} starts per {parsed[1]:g}s'}")
    if per_partition is not None:
        click.echo(f"{name}: {'no cap per partition' if per is None else f'at most {per} running per partition'}")


def _whole_or_none(field: str, text: str | None, zero_is_none: bool = False) -> int | None:
    if text is None or text.lower() in ("none", "off") or (zero_is_none and text == "0"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise CliError(f"{field}: expected a whole number of at least 1, or 'none' (got {text!r})", EXIT_USAGE)
    return int(text)


@queues.command("pause")
@click.argument("name")
@pass_ctx
def queues_pause(c: Context, name: str) -> None:
    """Stop every supervisor claiming from queue NAME (running jobs finish; submits still work)."""
    with api_errors():
        c.queue.pause_queue(name)
    click.echo(f"{name}: paused")


@queues.command("resume")
@click.argument("name")
@pass_ctx
def queues_resume(c: Context, name: str) -> None:
    """Let supervisors claim from queue NAME again."""
    with api_errors():
        c.queue.resume_queue(name)
    click.echo(f"{name}: resumed")
