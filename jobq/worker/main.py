"""The worker process: receives batches of jobs from its supervisor over a pipe, runs them
one at a time with their output captured, writes their results to the store itself (fenced
on the supervisor's id) and reports to the supervisor over a second pipe. When the store
cannot be written, the supervisor writes the results instead."""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..core import tracing
from ..core.allow import resolve_allowed
from ..core.codec import loads
from ..core.errors import StoreError
from ..core.models import JobError, dumps, resolve_target
from ..store import open_store
from . import context, steps
from .aioloop import run_coroutine
from .capture import OutputCapture
from .chunks import CHUNK_TARGET
from .context import Reports
from .handoff import SLOT_ATTEMPT, SLOT_JOB, SLOT_OUTPUT_AT, SLOT_SIZE, SLOT_STARTED, take
from .memory import memory_cap, out_of_memory
from .messages import Finished, Result, Retire, Task, Unstarted, Unwritten, tasks_of
from .osproc import die_with_parent, resident_mb, set_process_name, take_orders_from_supervisor_only
from .steps import Suspend

#: how long a worker waits for its next batch before it writes the figures it booked
IDLE_AFTER_SECONDS = 0.05


@dataclass
class WorkerConfig:
    """What a worker needs to know; picklable for the spawn start method."""

    supervisor_pid: int
    capture_path: str
    max_output_bytes: int = 65536
    max_payload_bytes: int = 1048576
    max_jobs: int | None = None
    max_memory_mb: int | None = None
    send_interval_seconds: float = 0.005
    sys_path: list[str] = field(default_factory=list)
    inherited_fds: list[int] = field(default_factory=list)
    # Where the worker writes its own results (fenced on the supervisor's id as owner), so
    # result writes run in parallel across workers instead of all in the supervisor.
    db_url: str | None = None
    owner: str = ""
    busy_timeout_seconds: float = 60.0
    lease_seconds: float | None = None
    # issue 12: the allow-list of targets (None: any), the mode of the capture file, and the
    # durability of the worker's own result writes.
    allowed_targets: list[str] | None = None
    file_mode: int = 0o600
    durability: str = "normal"


def run_job(
    task: Task, config: WorkerConfig, reports: Reports | None, cache: dict[str, Any]
) -> tuple[str | None, JobError | None, Suspend | None]:
    """Call the target; returns (result JSON text, None, None), (None, the error, None) or,
    when it sleeps or waits durably, (None, None, the suspension). With OpenTelemetry
    configured, the attempt runs in its consumer span (:mod:`jobq.core.tracing`)."""
    # Without OpenTelemetry imported, one dictionary lookup is all tracing costs here.
    span = (
        tracing.start_run(_traced_target(task), task.queue, task.job_id, task.attempt, task.trace) if _OTEL in _MODULES else None
    )
    current = context.enter(task.job_id, task.attempt, reports)
    steps.begin(task.job_id, task.attempt)
    try:
        fn = cache.get(task.target)
        if fn is None:
            if config.allowed_targets:  # checked on the text, before anything is imported
                fn = cache[task.target] = resolve_allowed(task.target, config.allowed_targets)
            else:
                fn = cache[task.target] = resolve_target(task.target)
        args = loads(task.args_json)
        kwargs = {} if task.kwargs_json == "{}" else loads(task.kwargs_json)
        if task.memory_mb is None:  # the common case pays no context manager
            value = fn(*args, **kwargs) if kwargs else fn(*args)
            if inspect.iscoroutine(value):  # an async def target: this worker's loop runs it
                value = run_coroutine(value)
        else:
            with memory_cap(task.memory_mb):
                value = fn(*args, **kwargs)
                if inspect.iscoroutine(value):
                    value = run_coroutine(value)
    except Suspend as suspend:
        if span is not None:
            span.end("suspended")
        return None, None, suspend
    except BaseException as exc:  # the job's failure, whatever it is, is the job's alone
        raised = JobError.from_exception(exc)
        if isinstance(exc, MemoryError) and task.memory_mb:
            raised = out_of_memory(task.memory_mb, raised)
        if span is not None:
            span.failed(exc)
            span.end("failed", raised.type)
        return None, raised, None
    finally:
        steps.end()
        context.leave(current)
    error = None
    text: str | None = None
    try:
        encoded = dumps(value)
    except (TypeError, ValueError) as exc:
        error = JobError("ResultNotSerializable", f"return value of type {type(value).__name__} is not JSON-serialisable: {exc}")
    else:
        if len(encoded) > config.max_payload_bytes:
            error = JobError(
                "ResultTooLarge", f"result is {len(encoded)} bytes, over max_payload_bytes={config.max_payload_bytes}"
            )
        else:
            text = encoded
    if span is not None:
        span.end("succeeded" if error is None else "failed", None if error is None else error.type)
    return text, error, None


_MODULES = sys.modules
_OTEL = "opentelemetry.trace"


def _traced_target(task: Task) -> str:
    """The function a span names: a chunk of a map is named after the map's target."""
    if task.target != CHUNK_TARGET:
        return task.target
    try:
        first, _ = json.JSONDecoder().raw_decode(task.args_json, 1)  # a chunk's arguments begin with its target
    except ValueError:
        return task.target
    return first if isinstance(first, str) else task.target


def _step_span(name: str, call: int, position: int) -> AbstractContextManager[Any]:
    """A durable step that runs for real is a child span of its job's run (when traced)."""
    if _OTEL not in _MODULES:
        return nullcontext()
    return tracing.step_span(name, call=call, position=position)


steps.set_step_hook(_step_span)


def run_task(
    task: Task,
    config: WorkerConfig,
    reports: Reports | None,
    cache: dict[str, Any],
    output_of: Callable[[], str] | None = None,
    started: float | None = None,
) -> Result:
    """Run one taken attempt into the :class:`Result` a worker writes back (``output_of``
    returns what it printed; ``started``: when it began, on the monotonic clock); what
    ``jobq.testing`` runs in the test's own process too."""
    started_at = time.time()
    if started is None:
        started = time.monotonic()
    try:
        result_json, error, suspend = run_job(task, config, reports, cache)
    finally:
        output = output_of() if output_of is not None else ""
    ended = time.monotonic()
    duration = ended - started
    # tuple.__new__: built in C (a named tuple's own constructor is Python code, once a job)
    return tuple.__new__(
        Result,
        (task.job_id, task.attempt, result_json, error, output, started_at, started_at + duration, duration)
        + ((suspend.wake_at, suspend.wait_key) if suspend is not None else (None, None)),
    )


class _Reporter:
    """Writes a batch of results to the store (fenced) and tells the supervisor what ran.
    When the store cannot be written, the results go to the supervisor to write instead,
    with the reason (the supervisor logs it)."""

    def __init__(self, reports: Reports, config: WorkerConfig) -> None:
        self.reports = reports
        self.owner = config.owner
        self.store: Any = None
        self.unusable = ""
        if config.db_url:
            try:
                self.store = open_store(config.db_url, config.busy_timeout_seconds, config.durability)
                self.store.tune_for_runner(config.lease_seconds)
            except StoreError as exc:
                self.store = None
                self.unusable = f"cannot open the database: {exc}"

    def idle(self) -> None:
        """The worker has nothing to run: write its booked figures (dashboard) and export its
        spans (OpenTelemetry) now."""
        tracing.flush()
        if self.store is not None:
            try:
                self.store.flush_figures()
            except StoreError:
                pass  # written with the next finish

    def send(self, results: list[Result]) -> None:
        if not results:
            return
        if self.store is None:
            self.reports.send(Unwritten(results, self.unusable or "no database"))
            return
        pid = os.getpid()
        try:
            rejected = self.store.finish(self.owner, [r.outcome(pid) for r in results], time.time())
        except StoreError as exc:
            self.reports.send(Unwritten(results, str(exc)))
            return
        self.reports.send(Finished(results, rejected))


def worker_main(
    tasks_in: Connection, reports_out: Connection, slots: Any, slot: int, lock: Any, draining: Any, config: WorkerConfig
) -> None:
    """Entry point of a worker process."""
    take_orders_from_supervisor_only()
    die_with_parent(config.supervisor_pid)
    set_process_name("jobq-worker")
    for fd in config.inherited_fds:  # the supervisor's lock file and socket are its alone
        try:
            os.close(fd)
        except OSError:
            pass
    for entry in reversed(config.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    base = slot * SLOT_SIZE
    reports = Reports(reports_out)
    reporter = _Reporter(reports, config)
    steps.bind(reporter.store, config.owner, config.max_payload_bytes, reporter.unusable)
    capture = OutputCapture(config.capture_path, config.max_output_bytes, config.file_mode)
    cache: dict[str, Any] = {}
    jobs_done = 0
    retire_reason = ""
    while not retire_reason:
        if not tasks_in.poll(IDLE_AFTER_SECONDS):
            # Nothing to run for a while (not the moment between two batches of a drain, when
            # this write would only queue for the lock): write what is still booked.
            reporter.idle()
        try:
            rows: list[tuple[Any, ...]] | None = tasks_in.recv()
        except (EOFError, OSError):
            return
        if rows is None:
            reporter.idle()
            return
        batch = tasks_of(rows)
        results: list[Result] = []
        last_send = time.monotonic()
        for index, task in enumerate(batch):
            if draining.value or retire_reason:
                reporter.send(results)
                results = []
                reports.send(Unstarted([t.job_id for t in batch[index:]]))
                break
            slots[base + SLOT_ATTEMPT] = task.attempt
            slots[base + SLOT_STARTED] = started = time.monotonic()
            slots[base + SLOT_OUTPUT_AT] = capture.start()
            if not take(slots, base, lock, task.job_id):
                continue  # withdrawn (cancelled before it started): the supervisor ends it
            result = run_task(task, config, reports, cache, capture.stop, started)
            slots[base + SLOT_JOB] = 0
            ended = time.monotonic()
            results.append(result)
            jobs_done += 1
            if config.max_jobs is not None and jobs_done >= config.max_jobs:
                retire_reason = f"ran {jobs_done} jobs (max_jobs_per_worker)"
            elif config.max_memory_mb is not None and resident_mb() > config.max_memory_mb:
                retire_reason = f"resident memory over {config.max_memory_mb} MB (max_memory_per_worker)"
            if index == len(batch) - 1 or ended - last_send >= config.send_interval_seconds or len(results) >= 256:
                reporter.send(results)
                results = []
                last_send = ended
        reporter.send(results)
    reporter.idle()
    reports.send(Retire(retire_reason))


def checkpointer_main(db_url: str, supervisor_pid: int, interval_seconds: float) -> None:
    """Entry point of a supervisor's checkpointer process: runs the store's housekeeping
    (a SQLite WAL checkpoint) every ``interval_seconds``, so no commit on the job path does."""
    take_orders_from_supervisor_only()
    die_with_parent(supervisor_pid)
    set_process_name("jobq-checkpoint")
    store = open_store(db_url)
    while True:
        time.sleep(interval_seconds)
        if os.getppid() != supervisor_pid:
            return
        store.checkpoint()
