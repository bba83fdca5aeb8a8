"""The worker process: receives jobs from its supervisor over a pipe, runs them with their
output captured, and sends back results. It never opens the database."""

from __future__ import annotations

import ctypes
import inspect
import io
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .aioloop import run_coroutine
from .errors import StoreError
from .models import Outcome, dumps, resolve_target
from .store import open_store

# Layout of each worker's slot in the shared array (doubles): the job it is running now
# (0 when none), that job's attempt number, and the wall time it started. The supervisor
# reads it to time jobs out and to know which job a dead worker was running.
SLOT_JOB, SLOT_ATTEMPT, SLOT_STARTED, SLOT_OUTPUT_AT = 0, 1, 2, 3
SLOT_SIZE = 4


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


class CurrentJob:
    """The job running in this worker process (see :func:`jobq.current_job`)."""

    def __init__(self, job_id: int, attempt: int, conn: Connection | None) -> None:
        self.id = job_id
        self.attempt = attempt
        self._conn = conn
        self._last_sent = 0.0
        self._pending: tuple[float, str] | None = None

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1) and a short message; ``jobq status`` and ``jobq wait`` show it."""
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        self._pending = (fraction, str(message).replace("\x00", "")[:500])
        now = time.monotonic()
        if now - self._last_sent >= 0.05:
            self.flush_progress()
            self._last_sent = now

    def flush_progress(self) -> None:
        if self._pending is not None and self._conn is not None:
            fraction, message = self._pending
            self._conn.send(("progress", self.id, self.attempt, fraction, message))
            self._pending = None


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

    def __init__(self, path: str, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        _flush_std()
        os.dup2(self.fd, 1)
        os.dup2(self.fd, 2)
        # The embedding process may have swapped sys.stdout/sys.stderr for objects that are
        # not fds 1 and 2 (pytest, Jupyter, redirect_stdout): a job's print must reach the file.
        sys.stdout = _stream_on(1, sys.stdout)
        sys.stderr = _stream_on(2, sys.stderr)
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


def error_dict(exc: BaseException) -> dict[str, Any]:
    """The stored form of an exception: type, message and formatted traceback."""
    error = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    item = getattr(exc, "jobq_item", None)
    if isinstance(item, int):  # raised by one item of a chunked map (jobq.chunks)
        error["item"] = item
    return error


def run_job(
    job_id: int,
    attempt: int,
    target: str,
    args_json: str,
    kwargs_json: str,
    config: WorkerConfig,
    conn: Connection | None,
    cache: dict[str, Any],
) -> tuple[bool, Any]:
    """Call the target; returns (True, result JSON text) or (False, error dict)."""
    global _current
    _current = CurrentJob(job_id, attempt, conn)
    try:
        fn = cache.get(target)
        if fn is None:
            fn = cache[target] = resolve_target(target)
        value = fn(*json.loads(args_json), **json.loads(kwargs_json))
        if inspect.iscoroutine(value):  # an async def target: this worker's loop runs it
            value = run_coroutine(value)
    except BaseException as exc:  # the job's failure, whatever it is, is the job's alone
        return False, error_dict(exc)
    finally:
        try:
            _current.flush_progress()
        except (OSError, ValueError):
            pass
        _current = None
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        return False, {
            "type": "ResultNotSerializable",
            "message": f"return value of type {type(value).__name__} is not JSON-serialisable: {exc}",
            "traceback": "",
        }
    if len(text) > config.max_payload_bytes:
        return False, {
            "type": "ResultTooLarge",
            "message": f"result is {len(text)} bytes, over max_payload_bytes={config.max_payload_bytes}",
            "traceback": "",
        }
    return True, text


def outcome_of(result: tuple[Any, ...], worker_pid: int) -> Outcome:
    """The store's :class:`Outcome` of one result a worker produced."""
    job_id, attempt, ok, payload, output, started, finished = result
    if ok:
        return Outcome(
            job_id,
            attempt,
            "succeeded",
            result_json=payload,
            worker=worker_pid,
            output=output,
            finished_at=finished,
            started_at=started,
        )
    return Outcome(
        job_id, attempt, "failed", error=payload, worker=worker_pid, output=output, finished_at=finished, started_at=started
    )


class _Reporter:
    """Writes a batch of results to the store (fenced) and tells the supervisor what ran.
    When the store cannot be written, the results go to the supervisor to write instead."""

    def __init__(self, conn: Connection, config: WorkerConfig) -> None:
        self.conn = conn
        self.owner = config.owner
        self.store: Any = None
        if config.db_url:
            try:
                self.store = open_store(config.db_url, config.busy_timeout_seconds)
                self.store.tune_for_runner()
            except StoreError:
                self.store = None

    def send(self, results: list[tuple[Any, ...]]) -> None:
        if not results:
            return
        if self.store is not None:
            pid = os.getpid()
            outcomes = [outcome_of(result, pid) for result in results]
            try:
                rejected = self.store.finish(self.owner, outcomes, time.time())
            except StoreError:
                pass  # the supervisor writes them, or fails loudly
            else:
                summary = [
                    (
                        job_id,
                        attempt,
                        ok,
                        None if ok else (payload.get("type"), payload.get("message")),
                        output,
                        started,
                        finished,
                    )
                    for job_id, attempt, ok, payload, output, started, finished in results
                ]
                self.conn.send(("finished", summary, rejected))
                return
        self.conn.send(("done", results))


def worker_main(conn: Connection, slots: Any, slot: int, draining: Any, config: WorkerConfig) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
    reporter = _Reporter(conn, config)
    capture = OutputCapture(config.capture_path, config.max_output_bytes)
    cache: dict[str, Any] = {}
    jobs_done = 0
    retire_reason = ""
    while not retire_reason:
        try:
            tasks = conn.recv()
        except (EOFError, OSError):
            return
        if tasks is None:
            return
        results: list[tuple[Any, ...]] = []
        last_send = time.monotonic()
        for index, (job_id, attempt, target, args_json, kwargs_json) in enumerate(tasks):
            if draining.value or retire_reason:
                reporter.send(results)
                results = []
                conn.send(("unstarted", [t[0] for t in tasks[index:]]))
                break
            started = time.time()
            slots[base + SLOT_ATTEMPT] = attempt
            slots[base + SLOT_STARTED] = started
            slots[base + SLOT_OUTPUT_AT] = capture.start()
            slots[base + SLOT_JOB] = job_id
            try:
                ok, payload = run_job(job_id, attempt, target, args_json, kwargs_json, config, conn, cache)
            finally:
                output = capture.stop()
            slots[base + SLOT_JOB] = 0
            results.append((job_id, attempt, ok, payload, output, started, time.time()))
            jobs_done += 1
            if config.max_jobs is not None and jobs_done >= config.max_jobs:
                retire_reason = f"ran {jobs_done} jobs (max_jobs_per_worker)"
            elif config.max_memory_mb is not None and resident_mb() > config.max_memory_mb:
                retire_reason = f"resident memory over {config.max_memory_mb} MB (max_memory_per_worker)"
            now = time.monotonic()
            if index == len(tasks) - 1 or now - last_send >= config.send_interval_seconds or len(results) >= 256:
                reporter.send(results)
                results = []
                last_send = now
        reporter.send(results)
    conn.send(("retire", retire_reason))


def checkpointer_main(db_url: str, supervisor_pid: int, interval_seconds: float) -> None:
    """Entry point of a supervisor's checkpointer process: runs the store's housekeeping
    (a SQLite WAL checkpoint) every ``interval_seconds``, so no commit on the job path does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(supervisor_pid)
    set_process_name("jobq-checkpoint")
    store = open_store(db_url)
    while True:
        time.sleep(interval_seconds)
        if os.getppid() != supervisor_pid:
            return
        store.checkpoint()
