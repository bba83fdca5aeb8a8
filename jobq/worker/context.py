"""What a running job sees of its worker: :func:`current_job` (its id, attempt and progress
reports) and the report pipe to the supervisor that carries them."""

from __future__ import annotations

import os
import threading
import time
from multiprocessing.connection import Connection

from .messages import Progress, Report


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


# One lock for the progress of this worker's jobs (it runs one at a time): a lock per job
# would be made for every job, most of which never report progress.
_PROGRESS_LOCK = threading.Lock()


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
        self._scheduled = False  # handed to the flusher once: close() must take it back

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1) and a short message; ``jobq status`` and ``jobq wait`` show it."""
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        with _PROGRESS_LOCK:
            self._pending = (fraction, str(message).replace("\x00", "")[:500])
            due = self._last_sent + self.PROGRESS_INTERVAL_SECONDS
            if due > time.monotonic():
                # Too soon to send: the flusher sends the latest value once the interval is up.
                self._scheduled = True
                _flusher.schedule(self, due)
                return
        self.flush_progress()

    def flush_progress(self) -> None:
        """Send the latest progress now, if any is pending."""
        with _PROGRESS_LOCK:
            pending, self._pending = self._pending, None
            if pending is None or self._reports is None:
                return
            self._last_sent = time.monotonic()
            self._reports.send(Progress(self.id, self.attempt, pending[0], pending[1]))

    def close(self) -> None:
        """The job ended: send what is pending now."""
        if not self._scheduled and self._pending is None:  # most jobs: no progress, no locks
            return
        _flusher.cancel(self)
        try:
            self.flush_progress()
        except (OSError, ValueError):
            pass


_current: CurrentJob | None = None


def current_job() -> CurrentJob | None:
    """The job running in this process, or None outside a jobq worker."""
    return _current


def enter(job_id: int, attempt: int, reports: Reports | None) -> CurrentJob:
    """Make a job this process's current one (for :func:`current_job`) while it runs."""
    global _current
    _current = CurrentJob(job_id, attempt, reports)
    return _current


def leave(job: CurrentJob) -> None:
    """The job ended: flush its progress and forget it."""
    global _current
    job.close()
    _current = None
