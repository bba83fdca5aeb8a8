"""Commands about jobs: submit, result, status, list, logs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from ..core.errors import JobFailed, ValidationError
from ..core.models import FINISHED_STATES, STATES, JobRecord, iso
from .app import EXIT_FAILED, EXIT_UNFINISHED, EXIT_USAGE, CliError, Context, api_errors, main, parse_arg, pass_ctx

if TYPE_CHECKING:
    from ..client.queue import Job, Queue
    from ..core.steps import StepRecord


# -- submit ------------------------------------------------------------------------------
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("target", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", type=int, help="Higher runs first (default 0 or the queue's).")
@click.option("--name", help="A label for the job.")
@click.option("--timeout", help="Hard time limit of the job: 30, 30s, 5m, 2h.")
@click.option("--retries", type=int, help="Retries after a failed attempt.")
@click.option("--retry-backoff", help="First retry delay (seconds); doubles each retry.")
@click.option("--retry-backoff-max", help="Longest retry delay (seconds).")
@click.option("--delay", help="Run no sooner than this from now: 30s, 5m, 2h.")
@click.option("--at", "at", help="Run no sooner than this ISO-8601 time (with a zone).")
@click.option("--after", multiple=True, help="Run after this job succeeded (repeatable).")
@click.option("--key", help="Unique key: an unfinished job with it is returned instead.")
@click.option("--result-ttl", help="Delete the finished job after this long: 7d.")
@click.option("--partition", help="The job's fair share inside its queue (e.g. a tenant).")
@click.option("--memory-mb", type=int, help="The job's memory cap in MB (beyond its worker's own).")
@click.option("--cpus", type=int, help="Worker slots the job occupies (default 1).")
@click.option("--on-conflict", type=click.Choice(["return", "replace"]), help="With --key: replace the queued job's arguments.")
@click.option("--no-check", is_flag=True, help="Do not import TARGET here before submitting.")
@click.option("--map", "map_file", type=click.File("r"), help="JSONL file: one job per line (a group).")
@click.option("--chunksize", type=int, help="With --map: items per job (default 1); results stay one per item.")
@click.option("--file", "bulk_file", type=click.File("r"), help="JSONL file of jobs to submit in bulk.")
@click.option("--wait", is_flag=True, help="Wait for the job and print its result (exit as `jobq result`).")
@click.option("--wait-timeout", type=float, help="With --wait: give up after this many seconds (exit 3).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of the bare id.")
@pass_ctx
def submit(
    c: Context,
    target: str | None,
    args: tuple[str, ...],
    kwargs_json: str | None,
    queue: str,
    priority: int | None,
    name: str | None,
    timeout: str | None,
    retries: int | None,
    retry_backoff: str | None,
    retry_backoff_max: str | None,
    delay: str | None,
    at: str | None,
    after: tuple[str, ...],
    key: str | None,
    result_ttl: str | None,
    partition: str | None,
    memory_mb: int | None,
    cpus: int | None,
    on_conflict: str | None,
    no_check: bool,
    map_file: Any,
    chunksize: int | None,
    bulk_file: Any,
    wait: bool,
    wait_timeout: float | None,
    as_json: bool,
) -> None:
    """Submit TARGET ('package.module:function') with ARGs (JSON literals; bare words are strings).

    Prints the new job's id (with --map, the group's id; with --file, one id a line)."""
    for arg in args:  # negative numbers are arguments; any other dash word is a mistyped option
        if arg.startswith("-") and not isinstance(parse_arg(arg), (int, float)):
            raise CliError(f"No such option: {arg}", EXIT_USAGE)
    from ..client.options import SubmitOptions

    run_at = None
    if at is not None:
        try:
            run_at = datetime.fromisoformat(at)
        except ValueError:
            raise CliError(f"--at: not an ISO-8601 time: {at!r}", EXIT_USAGE) from None
        if run_at.tzinfo is None:
            raise CliError("--at: give a time zone, e.g. 2026-01-01T09:00:00+00:00", EXIT_USAGE)
    opts = SubmitOptions(
        queue=queue,
        priority=priority,
        name=name,
        timeout=timeout,
        retries=retries,
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        delay=delay,
        run_at=run_at,
        result_ttl=result_ttl,
        check=not no_check,
        partition=partition,
        memory_mb=memory_mb,
        cpus=cpus,
    )
    options = opts.given()
    kwargs = None
    if kwargs_json is not None:
        kwargs = parse_arg(kwargs_json)
        if not isinstance(kwargs, dict):
            raise CliError("kwargs: expected a JSON object", EXIT_USAGE)
    if chunksize is not None and map_file is None:
        raise CliError("--chunksize goes with --map", EXIT_USAGE)
    q = c.queue
    if map_file is not None or bulk_file is not None:
        if map_file is not None and bulk_file is not None:
            raise CliError("give --map or --file, not both", EXIT_USAGE)
        if args or after or key or wait:
            raise CliError("--map/--file take no ARGs, --after, --key or --wait", EXIT_USAGE)
        with api_errors():
            if map_file is not None:
                if not target:
                    raise CliError("--map needs TARGET", EXIT_USAGE)
                items = (_jsonl_args(line, n) for n, line in _lines(map_file))
                group = q.map(target, items, chunksize=1 if chunksize is None else chunksize, kwargs=kwargs, **options)
                click.echo(
                    json.dumps({"group": group.id, "jobs": len(group.job_ids), "items": len(group)}) if as_json else group.id
                )
            else:
                jobs = _submit_file(q, target, bulk_file, kwargs, options)
                for job in jobs:
                    click.echo(json.dumps({"id": job.id}) if as_json else job.id)
        return
    if not target:
        raise CliError("missing TARGET ('package.module:function')", EXIT_USAGE)
    with api_errors():
        job = q.submit(
            target,
            args=tuple(parse_arg(a) for a in args),
            kwargs=kwargs,
            **opts.merged(key=key, depends_on=list(after) or None, on_conflict=on_conflict or "return").given(),
        )
    if job.existing:
        click.echo(f"job {job.id} with key {key!r} is not finished yet: not submitted again", err=True)
    click.echo(json.dumps({"id": job.id, "existing": job.existing}) if as_json else job.id)
    if wait:
        _print_result(job, True, wait_timeout)


def _lines(fh: Any) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(fh, 1):
        if line.strip():
            yield n, line


def _jsonl_args(line: str, n: int) -> tuple[Any, ...]:
    try:
        value = json.loads(line)
    except ValueError:
        raise ValidationError("map", f"line {n}: not JSON") from None
    # A JSON array is the argument list; any other value is the single argument.
    return tuple(value) if isinstance(value, list) else (value,)


def _submit_file(q: Queue, target: str | None, fh: Any, kwargs: Any, options: dict[str, Any]) -> list[Job]:
    """Each line: a JSON object (a job definition: target, args, kwargs, queue, ...) or, with
    TARGET, a JSON array of arguments (any other value: the single argument)."""
    plain: list[tuple[Any, ...]] = []
    defs: list[dict[str, Any]] = []
    for n, line in _lines(fh):
        try:
            value = json.loads(line)
        except ValueError:
            raise ValidationError("file", f"line {n}: not JSON") from None
        if isinstance(value, dict):
            defs.append(value)
        elif target is None:
            raise ValidationError("file", f"line {n}: a job definition object is needed without TARGET")
        else:
            plain.append(tuple(value) if isinstance(value, list) else (value,))
    if defs and plain:
        raise ValidationError("file", "mix of job objects and argument lines")
    if plain:
        return q.submit_many(target, plain, kwargs=kwargs, **options)  # type: ignore[arg-type]
    defaults = {k: v for k, v in options.items() if v is not None}
    if target is not None:
        defaults["target"] = target
    # Every definition is validated first; then all are stored in one transaction.
    return q.submit_batch({**defaults, **d} for d in defs)


# -- results -----------------------------------------------------------------------------
def _print_result(job: Job, wait: bool, timeout: float | None) -> None:
    with api_errors():
        try:
            if wait:
                value = _join_with_progress(job, timeout)
            else:
                state = job.state
                if state not in FINISHED_STATES:
                    click.echo(f"job {job.id} is {state}", err=True)
                    sys.exit(EXIT_UNFINISHED)
                value = job.join(0)
        except TimeoutError as exc:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_UNFINISHED)
        except JobFailed as exc:
            click.echo(f"job {exc.job_id} {exc.state}: {exc.error_type}: {exc.message}", err=True)
            if exc.traceback:
                click.echo(exc.traceback.rstrip(), err=True)
            sys.exit(EXIT_FAILED)
    click.echo(json.dumps(value))


def _join_with_progress(job: Job, timeout: float | None) -> Any:
    if not sys.stderr.isatty():
        return job.join(timeout)
    start = time.monotonic()
    while True:
        step = 0.5 if timeout is None else max(0.0, min(0.5, timeout - (time.monotonic() - start)))
        try:
            value = job.join(step)
            click.echo("\r\033[K", err=True, nl=False)
            return value
        except TimeoutError:
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                click.echo("", err=True)
                raise
            click.echo(f"\rwaiting for job {job.id}: {job.state}, {elapsed:.0f}s", err=True, nl=False)


@main.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait for the job to finish.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds (exit 3).")
@pass_ctx
def result(c: Context, job_id: str, wait: bool, timeout: float | None) -> None:
    """Print JOB_ID's JSON result. Exit 0 succeeded, 1 failed or cancelled, 3 unfinished."""
    with api_errors():
        job = c.queue.get(job_id)
    _print_result(job, wait, timeout)


@main.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(c: Context, job_id: str | None, as_json: bool) -> None:
    """Counts by state and queue and the live supervisors; with JOB_ID, that job's record."""
    q = c.queue
    with api_errors():
        if job_id is not None:
            if as_json:
                click.echo(json.dumps(q.job_status(job_id), indent=2))
                return
            from ..client.waits import why_waiting

            record = q.record(job_id)
            _print_record(record)
            for reason in why_waiting(q, record):
                click.echo(f"{'waiting:':<13} {reason}")
            _print_steps(q.steps(record.id), q.waiting_for(record.id))
            return
        data = q.status()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    shown = [s for s in STATES if data["counts"][s] or s in ("queued", "running", "succeeded", "failed")]
    click.echo(f"{'queue':<20}" + "".join(f"{s:>11}" for s in shown))
    for queue, counts in data["queues"].items():
        click.echo(f"{queue:<20}" + "".join(f"{counts[s]:>11}" for s in shown))
    click.echo(f"{'total':<20}" + "".join(f"{data['counts'][s]:>11}" for s in shown))
    sups = data["supervisors"]
    click.echo(f"\n{len(sups)} live supervisor(s)")
    for s in sups:
        click.echo(f"  {s['id']}  pid {s['pid']} on {s['host']}, {s['concurrency']} workers, heartbeat {s['heartbeat_at']}")


def _print_record(r: JobRecord) -> None:
    d = r.to_dict()
    for key in (
        "id",
        "name",
        "target",
        "args",
        "kwargs",
        "queue",
        "priority",
        "state",
        "attempts",
        "created_at",
        "run_at",
        "started_at",
        "finished_at",
        "supervisor",
        "worker",
        "timeout",
        "key",
        "group",
        "depends_on",
        "partition",
        "memory_mb",
    ):
        value = d[key]
        if value not in (None, [], {}) or key in ("args", "state", "attempts"):
            click.echo(f"{key + ':':<13} {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    if r.cpus != 1:
        click.echo(f"{'cpus:':<13} {r.cpus}")
    if r.progress is not None:
        click.echo(f"{'progress:':<13} {r.progress:.0%} {r.progress_message or ''}".rstrip())
    if r.state == "succeeded":
        click.echo(f"{'result:':<13} {json.dumps(r.result)}")
    if r.error:
        click.echo(f"{'error:':<13} {r.error.get('type')}: {r.error.get('message')}")
    for e in r.errors:
        click.echo(f"  attempt {e['attempt']}: {e.get('type')}: {e.get('message')}")
    if r.error and r.error.get("traceback"):
        click.echo(r.error["traceback"].rstrip())


def _print_steps(steps: list[StepRecord], waiting: str | None) -> None:
    if waiting is not None:
        click.echo(f"{'waiting for:':<13} event {waiting!r}")
    if steps:
        click.echo("steps:")
    for s in steps:
        d = s.to_dict()
        extra = f" key {s.wait_key!r}" if s.wait_key is not None else ""
        if s.wake_at is not None:
            extra += f" until {d['wake_at']}"
        click.echo(f"  {s.seq + 1:>3}. {s.name} #{s.call}  {d['state']}{extra}  (attempt {s.attempt}, {d['started_at']})")


@main.command("list")
@click.option("--state", type=click.Choice(STATES))
@click.option("--queue")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_ctx
def list_(c: Context, state: str | None, queue: str | None, limit: int, as_json: bool) -> None:
    """Jobs, newest first."""
    with api_errors():
        records = c.queue.list(state=state, queue=queue, limit=limit)
    if as_json:
        for r in records:
            click.echo(json.dumps(r.to_dict()))
        return
    click.echo(f"{'id':>8}  {'state':<10} {'queue':<12} {'attempts':>8}  {'created':<24} target")
    for r in records:
        click.echo(
            f"{r.id:>8}  {r.state:<10} {r.queue:<12} {r.attempts:>8}  {iso(r.created_at):<24} "
            f"{r.target}{' (' + r.name + ')' if r.name else ''}"
        )


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ..., "output": ...}.')
@pass_ctx
def logs(c: Context, job_id: str, as_json: bool) -> None:
    """What JOB_ID printed (stdout and stderr, bounded)."""
    with api_errors():
        job = c.queue.get(job_id)
        text = c.queue.logs(job.id)
    if as_json:
        click.echo(json.dumps({"id": job.id, "output": text}))
    else:
        click.echo(text, nl=not text.endswith("\n") and bool(text))
