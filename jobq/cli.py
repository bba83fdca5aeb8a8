"""The ``jobq`` command: parses, calls the API, prints, maps errors to exit codes.

Exit codes: 0 success; 1 the job failed or was cancelled; 2 usage error, bad input or an
unknown id; 3 the job is unfinished; 4 the database cannot be used.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click

from .api import Group, Job, Queue
from .config import parse_duration
from .errors import ConfigError, JobFailed, JobNotFound, StoreError, ValidationError
from .local import is_dead
from .models import FINISHED_STATES, STATES, JobRecord, iso

EXIT_FAILED, EXIT_USAGE, EXIT_UNFINISHED, EXIT_STORE = 1, 2, 3, 4


class CliError(click.ClickException):
    """A one-line error with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn jobq exceptions into one clear line and the documented exit code."""
    try:
        yield
    except (ValidationError, ConfigError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except JobNotFound as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except StoreError as exc:
        raise CliError(str(exc), EXIT_STORE) from None


def parse_arg(text: str) -> Any:
    """A JSON literal; a bare word that is not JSON is a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class Context:
    def __init__(self, db: str | None, config: str | None) -> None:
        self.db = db
        self.config = config
        self._queue: Queue | None = None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            with api_errors():
                self._queue = Queue(self.db, config=self.config)
        return self._queue


pass_ctx = click.make_pass_decorator(Context)


class JobqGroup(click.Group):
    """Every error, click's usage errors included, is one line on stderr and an exit code."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # plain `jobq`: the help, as usual
                click.echo(exc.format_message())
                sys.exit(0)
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=JobqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="JOBQ_DB", help="Database file (env JOBQ_DB, else the config file, else ./jobq.db).")
@click.option(
    "--config",
    "config",
    envvar="JOBQ_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML configuration file (env JOBQ_CONFIG, else ./jobq.toml when present).",
)
@click.version_option(package_name="jobq")
@click.pass_context
def main(ctx: click.Context, db: str | None, config: str | None) -> None:
    """jobq: a durable job queue on one SQLite file."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # targets are importable from here, as with rq and celery
    ctx.obj = Context(db, config)


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
@click.option("--no-check", is_flag=True, help="Do not import TARGET here before submitting.")
@click.option("--map", "map_file", type=click.File("r"), help="JSONL file: one job per line (a group).")
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
    no_check: bool,
    map_file: Any,
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
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "name": name,
        "timeout": timeout,
        "retries": retries,
        "retry_backoff": retry_backoff,
        "retry_backoff_max": retry_backoff_max,
        "delay": delay,
        "result_ttl": result_ttl,
        "check": not no_check,
    }
    if at is not None:
        try:
            options["run_at"] = datetime.fromisoformat(at)
        except ValueError:
            raise CliError(f"--at: not an ISO-8601 time: {at!r}", EXIT_USAGE) from None
        if options["run_at"].tzinfo is None:
            raise CliError("--at: give a time zone, e.g. 2026-01-01T09:00:00+00:00", EXIT_USAGE)
    kwargs = None
    if kwargs_json is not None:
        kwargs = parse_arg(kwargs_json)
        if not isinstance(kwargs, dict):
            raise CliError("kwargs: expected a JSON object", EXIT_USAGE)
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
                group = q.map(target, (_jsonl_args(line, n) for n, line in _lines(map_file)), kwargs=kwargs, **options)
                click.echo(json.dumps({"group": group.id, "jobs": len(group)}) if as_json else group.id)
            else:
                jobs = _submit_file(q, target, bulk_file, kwargs, options)
                for job in jobs:
                    click.echo(json.dumps({"id": job.id}) if as_json else job.id)
        return
    if not target:
        raise CliError("missing TARGET ('package.module:function')", EXIT_USAGE)
    with api_errors():
        job = q.submit(
            target, args=tuple(parse_arg(a) for a in args), kwargs=kwargs, key=key, depends_on=list(after) or None, **options
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
    jobs = []
    for d in defs:  # full definitions: validated one by one, stored one by one
        spec = {**{k: v for k, v in options.items() if v is not None}, **d}
        spec.setdefault("target", target)
        tgt = spec.pop("target")
        if tgt is None:
            raise ValidationError("target", "missing")
        jobs.append(q.submit(tgt, **spec))
    return jobs


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
            record = q.record(job_id)
            if as_json:
                click.echo(json.dumps(record.to_dict(), indent=2))
            else:
                _print_record(record)
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
    ):
        value = d[key]
        if value not in (None, [], {}) or key in ("args", "state", "attempts"):
            click.echo(f"{key + ':':<13} {json.dumps(value) if isinstance(value, (list, dict)) else value}")
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
@pass_ctx
def logs(c: Context, job_id: str) -> None:
    """What JOB_ID printed (stdout and stderr, bounded)."""
    with api_errors():
        text = c.queue.logs(job_id)
    click.echo(text, nl=not text.endswith("\n") and bool(text))


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
@pass_ctx
def retry(c: Context, job_ids: tuple[str, ...], failed: bool, queue: str | None) -> None:
    """Requeue failed or cancelled jobs."""
    if bool(job_ids) == failed:
        raise CliError("give job ids or --failed", EXIT_USAGE)
    with api_errors():
        ids = c.queue.retry(*job_ids, failed=failed, queue=queue)
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
@pass_ctx
def purge(c: Context, states: tuple[str, ...], older_than: str) -> None:
    """Delete finished jobs."""
    with api_errors():
        n = c.queue.purge(states or FINISHED_STATES, older_than=older_than)
    click.echo(f"{n} job(s) purged")


@main.command()
@click.argument("ident")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 3).")
@pass_ctx
def wait(c: Context, ident: str, timeout: float | None) -> None:
    """Wait for a group (or a job), showing progress: done / total, rate and ETA."""
    q = c.queue
    with api_errors():
        if ident.startswith("g"):
            target: Group | Job = q.group(ident)
            total = len(target)
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


def _progress_line(q: Queue, target: Group | Job, done: int, total: int, elapsed: float, counts: dict[str, int]) -> str:
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
            click.echo(
                json.dumps(
                    {
                        "name": s.name,
                        "target": s.target,
                        "args": s.args,
                        "queue": s.queue,
                        "cron": s.cron,
                        "every": s.every,
                        "next_run_at": iso(s.next_run_at),
                        "last_run_at": iso(s.last_run_at),
                    }
                )
            )
        return
    for s in items:
        when = f"cron {s.cron!r}" if s.cron else f"every {s.every:g}s"
        click.echo(f"{s.name:<20} {s.target:<30} {when:<22} next {iso(s.next_run_at)}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def queues(c: Context, as_json: bool) -> None:
    """Queues with their settings and counts."""
    q = c.queue
    with api_errors():
        data = q.status()["queues"]
    names = sorted(set(data) | set(q.settings.queues))
    rows = []
    for name in names:
        settings = q.settings.queue_settings(name).model_dump()
        rows.append({"queue": name, "settings": settings, "counts": data.get(name, dict.fromkeys(STATES, 0))})
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    for row in rows:
        s = {k: v for k, v in row["settings"].items() if v is not None}
        counts = " ".join(f"{k}={v}" for k, v in row["counts"].items() if v)
        click.echo(f"{row['queue']:<20} {json.dumps(s) if s else '{}':<40} {counts}")


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
) -> None:
    """Run a supervisor and its workers in the foreground."""
    from .supervisor import Supervisor

    q = c.queue
    logging.basicConfig(
        level=log_level or q.settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
        )
        code = sup.run()
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
        alive = [s for s in sups if is_dead(s.lock_path) is False or _pid_running(s.pid)]
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


if __name__ == "__main__":  # pragma: no cover
    main()
