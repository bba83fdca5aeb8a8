"""The worker process: receives batches of jobs from its supervisor over a pipe, runs them
one at a time with their output captured, writes their results to the store itself (fenced
on the supervisor's id) and reports to the supervisor over a second pipe. When the store
cannot be written, the supervisor writes the results instead."""

from __future__ import annotations

import ctypes
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..core.allow import resolve_allowed
from ..core.errors import StoreError
from ..core.fsmodes import open_or_create
from ..core.models import JobError, dumps, resolve_target
from ..store import open_store
from .aioloop import run_coroutine
from .memory import memory_cap, out_of_memory
from .messages import Finished, Progress, Report, Result, Retire, Task, Unstarted, Unwritten

# Layout of each worker's slot in the shared array (doubles): the job it is running now
# (0 when none), that job's attempt number, the monotonic time it started (CLOCK_MONOTONIC
# is one clock for every process of the machine) and where its output begins in the
# capture file. The supervisor reads it to time jobs out and to know which job a dead
# worker was running.
SLOT_JOB, SLOT_ATTEMPT, SLOT_STARTED, SLOT_OUTPUT_AT = 0, 1, 2, 3
SLOT_SIZE = 4

# How a supervisor ends one of its workers (timeout, cancel, drain past the grace): a signal no
# service manager sends to a process group. Its default action ends the process; a job that
# wants to clean up first installs a handler for it. SIGKILL follows after kill_grace_seconds.
STOP_SIGNAL = signal.SIGUSR1


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


class Reports:
    """The worker's end of the report pipe, shared by the job's thread and the progress
    flusher: one message at a time."""

    def __init__(self, conn: Connection | None) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: Report) -> None:
        if self.conn is None:
            return
        with self.lock:
            self.conn.send(message)


class _ProgressFlusher:
    """One thread per worker process, started on first need, that sends a job's latest
    progress when its interval is up (a timer thread per call cost a thread start a job)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.job: CurrentJob | None = None
        self.at = 0.0
        self.thread: threading.Thread | None = None
        self.pid = 0

    def schedule(self, job: CurrentJob, at: float) -> None:
        with self.cond:
            if self.thread is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="jobq-progress", daemon=True)
                self.thread.start()
            if self.job is not job:
                self.job, self.at = job, at
                self.cond.notify()

    def cancel(self, job: CurrentJob) -> None:
        with self.cond:
            if self.job is job:
                self.job = None

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.job is None:
                    self.cond.wait()
                wait = self.at - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue  # cancelled or rescheduled meanwhile: look again
                job, self.job = self.job, None
            try:
                job.flush_progress()
            except (OSError, ValueError):
                pass


_flusher = _ProgressFlusher()


class CurrentJob:
    """The job running in this worker process (see :func:`jobq.current_job`)."""

    #: progress reaches the supervisor at most this often, and the latest value at most
    #: this long after it was set, whatever the job does next
    PROGRESS_INTERVAL_SECONDS = 0.05

    def __init__(self, job_id: int, attempt: int, reports: Reports | None) -> None:
        self.id = job_id
        self.attempt = attempt
        self._reports = reports
        self._last_sent = 0.0
        self._pending: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1) and a short message; ``jobq status`` and ``jobq wait`` show it."""
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        with self._lock:
            self._pending = (fraction, str(message).replace("\x00", "")[:500])
            due = self._last_sent + self.PROGRESS_INTERVAL_SECONDS
            if due > time.monotonic():
                # Too soon to send: the flusher sends the latest value once the interval is up.
                _flusher.schedule(self, due)
                return
        self.flush_progress()

    def flush_progress(self) -> None:
        """Send the latest progress now, if any is pending."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None or self._reports is None:
                return
            self._last_sent = time.monotonic()
            self._reports.send(Progress(self.id, self.attempt, pending[0], pending[1]))

    def close(self) -> None:
        """The job ended: send what is pending now."""
        _flusher.cancel(self)
        try:
            self.flush_progress()
        except (OSError, ValueError):
            pass


_current: CurrentJob | None = None


def current_job() -> CurrentJob | None:
    """The job running in this process, or None outside a jobq worker."""
    return _current


def _die_with_parent(supervisor_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its supervisor dies, so an orphan never runs
    a job that a new supervisor has already taken back."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != supervisor_pid:
        os._exit(1)


def _ignore(signum: int, frame: Any) -> None:
    """A group's SIGTERM/SIGINT reaches workers too: they are the supervisor's to act on."""


def take_orders_from_supervisor_only() -> None:
    """SIGTERM and SIGINT sent to the whole process group (systemd, ``tini -g``, Ctrl-C) do
    nothing here: the supervisor drains and ends workers itself, with :data:`STOP_SIGNAL`
    (default action: end the process) then SIGKILL. A handler rather than SIG_IGN, so the
    programs a job starts get the default dispositions back when they exec."""
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(STOP_SIGNAL, signal.SIG_DFL)


def set_process_name(name: str) -> None:
    """Name this process for ps/top (Linux ``PR_SET_NAME``; at most 15 bytes)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        except (OSError, AttributeError):
            pass


def resident_mb() -> float:
    """This process's resident memory in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class OutputCapture:
    """Points the worker's fds 1 and 2 at one file for its whole life; a job's output is what
    the file gained while it ran (a bounded tail is kept). Two cheap calls a job, no dup2."""

    # Start the file afresh once it grows past this, between jobs.
    ROLLOVER_BYTES = 8 * 2**20

    def __init__(self, path: str, max_bytes: int, file_mode: int = 0o600) -> None:
        self.max_bytes = max_bytes
        self.fd = open_or_create(path, file_mode, os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        _flush_std()
        os.dup2(self.fd, 1)
        os.dup2(self.fd, 2)
        # The embedding process may have swapped sys.stdout/sys.stderr for objects that are
        # not fds 1 and 2 (pytest, Jupyter, redirect_stdout): a job's print must reach the file.
        sys.stdout = _stream_on(1, sys.stdout)
        sys.stderr = _stream_on(2, sys.stderr)
        for stream in (sys.stdout, sys.stderr):  # a running job's lines reach the file as printed
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
        self.offset = 0

    def start(self) -> int:
        """Where this job's output begins in the file."""
        _flush_std()
        if self.offset > self.ROLLOVER_BYTES:
            os.ftruncate(self.fd, 0)
            self.offset = 0
        return self.offset

    def stop(self) -> str:
        _flush_std()
        size = os.fstat(self.fd).st_size
        start, self.offset = self.offset, size
        if size <= start:
            return ""
        return read_range(self.fd, start, size, self.max_bytes)


def _stream_on(fd: int, current: Any) -> Any:
    try:
        if current is not None and current.fileno() == fd:
            return current
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return open(fd, "w", encoding="utf-8", errors="replace", closefd=False)


def read_range(fd: int, start: int, end: int, max_bytes: int) -> str:
    """Bytes ``start..end`` of an open file, at most the last ``max_bytes``, noting any cut."""
    if end <= start or max_bytes == 0:
        return ""
    first = max(start, end - max_bytes)
    # NUL is dropped: no backend's text column stores it the same way.
    text = os.pread(fd, end - first, first).decode("utf-8", errors="replace").replace("\x00", "")
    if first > start:
        text = f"[... {first - start} bytes of earlier output dropped]\n" + text
    return text


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def run_job(
    task: Task, config: WorkerConfig, reports: Reports | None, cache: dict[str, Any]
) -> tuple[str | None, JobError | None]:
    """Call the target; returns (result JSON text, None) or (None, the error)."""
    global _current
    current = _current = CurrentJob(task.job_id, task.attempt, reports)
    try:
        fn = cache.get(task.target)
        if fn is None:
            if config.allowed_targets:  # checked on the text, before anything is imported
                fn = cache[task.target] = resolve_allowed(task.target, config.allowed_targets)
            else:
                fn = cache[task.target] = resolve_target(task.target)
        args, kwargs = json.loads(task.args_json), json.loads(task.kwargs_json)
        if task.memory_mb is None:  # the common case pays no context manager
            value = fn(*args, **kwargs)
            if inspect.iscoroutine(value):  # an async def target: this worker's loop runs it
                value = run_coroutine(value)
        else:
            with memory_cap(task.memory_mb):
                value = fn(*args, **kwargs)
                if inspect.iscoroutine(value):
                    value = run_coroutine(value)
    except BaseException as exc:  # the job's failure, whatever it is, is the job's alone
        if isinstance(exc, MemoryError) and task.memory_mb:
            return None, out_of_memory(task.memory_mb, JobError.from_exception(exc))
        return None, JobError.from_exception(exc)
    finally:
        current.close()
        _current = None
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        return None, JobError(
            "ResultNotSerializable", f"return value of type {type(value).__name__} is not JSON-serialisable: {exc}"
        )
    if len(text) > config.max_payload_bytes:
        return None, JobError("ResultTooLarge", f"result is {len(text)} bytes, over max_payload_bytes={config.max_payload_bytes}")
    return text, None


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
        """The worker has nothing to run: write its booked figures (dashboard) now."""
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
    tasks_in: Connection, reports_out: Connection, slots: Any, slot: int, draining: Any, config: WorkerConfig
) -> None:
    """Entry point of a worker process."""
    take_orders_from_supervisor_only()
    _die_with_parent(config.supervisor_pid)
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
    capture = OutputCapture(config.capture_path, config.max_output_bytes, config.file_mode)
    cache: dict[str, Any] = {}
    jobs_done = 0
    retire_reason = ""
    while not retire_reason:
        if not tasks_in.poll(0):
            reporter.idle()  # nothing to run: write what is still booked before waiting
        try:
            batch: list[Task] | None = tasks_in.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            reporter.idle()
            return
        results: list[Result] = []
        last_send = time.monotonic()
        for index, task in enumerate(batch):
            if draining.value or retire_reason:
                reporter.send(results)
                results = []
                reports.send(Unstarted([t.job_id for t in batch[index:]]))
                break
            started_at = time.time()
            started = time.monotonic()
            slots[base + SLOT_ATTEMPT] = task.attempt
            slots[base + SLOT_STARTED] = started
            slots[base + SLOT_OUTPUT_AT] = capture.start()
            slots[base + SLOT_JOB] = task.job_id
            try:
                result_json, error = run_job(task, config, reports, cache)
            finally:
                output = capture.stop()
            slots[base + SLOT_JOB] = 0
            ended = time.monotonic()
            results.append(
                Result(
                    task.job_id,
                    task.attempt,
                    result_json,
                    error,
                    output,
                    started_at,
                    started_at + (ended - started),
                    ended - started,
                )
            )
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
    _die_with_parent(supervisor_pid)
    set_process_name("jobq-checkpoint")
    store = open_store(db_url)
    while True:
        time.sleep(interval_seconds)
        if os.getppid() != supervisor_pid:
            return
        store.checkpoint()
