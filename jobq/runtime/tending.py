"""How a supervisor tends its workers (a mixin of :class:`~jobq.runtime.supervisor.Supervisor`):
starting them and the checkpointer, reaping the dead, ending the overdue and the cancelled,
and storing who runs what and what it printed so far."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from ..core.config import Settings
from ..core.local import LocalPresence
from ..core.models import CANCELLED_BY_REQUEST, JobError, Outcome, OutcomeKind
from ..store import JobStart, OutputUpdate, ProgressUpdate, Store
from ..worker.main import WorkerConfig, checkpointer_main
from .crashloop import CrashLoop
from .dispatch import Dispatcher
from .logformat import job_fields
from .oom import OomWatch
from .workerpool import KillOrder, WorkerPool, WorkerProcess, signal_name

log = logging.getLogger("jobq.supervisor")

# A job running this long gets its worker's pid stored while it runs (jobq.Process.pid).
NOTE_WORKER_AFTER = 0.05

# A job running this long has its output so far stored, and again this often while it grows.
OUTPUT_EVERY_SECONDS = 1.0

# How often the checkpointer process copies the SQLite WAL back into the database.
CHECKPOINT_SECONDS = 0.25


class WorkerTending:
    """Starts, reaps, times out, cancels and observes the pool's workers."""

    id: str
    settings: Settings
    store: Store
    stopping: bool
    max_jobs_per_worker: int | None
    max_memory_per_worker: int | None
    pool: WorkerPool | None
    _outcomes: list[Outcome]
    _progress: dict[int, ProgressUpdate]
    _noted: dict[int, tuple[int, int]]
    _published: dict[int, tuple[int, int, int]]
    _next_output_at: float
    _selector: selectors.BaseSelector | None
    _presence: LocalPresence | None
    _checkpointer: Any
    _drain_deadline: float | None
    _ctx: Any
    dispatcher: Dispatcher | None
    _oom: OomWatch
    _crash_loop: CrashLoop

    if TYPE_CHECKING:  # defined by ReportHandling, the supervisor's other mixin

        def _read_worker(self, w: WorkerProcess) -> None: ...

        @staticmethod
        def _log_output(job_id: int, output: str | None) -> None: ...

    def _worker_config(self, slot: int, capture_path: str) -> WorkerConfig:
        fork = self._ctx.get_start_method() == "fork"
        return WorkerConfig(
            supervisor_pid=os.getpid(),
            capture_path=capture_path,
            max_output_bytes=self.settings.max_output_bytes,
            max_payload_bytes=self.settings.max_payload_bytes,
            max_jobs=self.max_jobs_per_worker,
            max_memory_mb=self.max_memory_per_worker,
            sys_path=[os.getcwd(), *[p for p in sys.path if p]],
            inherited_fds=self._presence.fds() if self._presence is not None and fork else [],
            db_url=self.store.url,
            owner=self.id,
            busy_timeout_seconds=self.settings.busy_timeout_seconds,
            lease_seconds=self.settings.lease_seconds,
            allowed_targets=self.settings.allowed_targets,
            file_mode=self.settings.file_mode,
            durability=self.settings.durability,
        )

    def _start_worker(self, slot: int) -> None:
        assert self.pool is not None and self._selector is not None
        w = self.pool.start(slot)
        self._selector.register(w.reports_in.fileno(), selectors.EVENT_READ, ("worker", w))
        self._selector.register(w.process.sentinel, selectors.EVENT_READ, ("sentinel", w))
        # Its task pipe is watched (for writability) only while its outbox holds data.

    def _start_checkpointer(self) -> None:
        if not self.store.wants_checkpointer:
            return
        self._checkpointer = self._ctx.Process(
            target=checkpointer_main,
            args=(self.store.url, os.getpid(), CHECKPOINT_SECONDS),
            name="jobq-checkpointer",
            daemon=True,
        )
        self._checkpointer.start()

    def _reap_workers(self, now: float) -> None:
        assert self.pool is not None and self._selector is not None
        for w in self.pool.dead():
            self._read_worker(w)  # results it sent before dying still count
            w.process.join()
            exitcode = w.process.exitcode
            current = self.pool.current_job_id(w)
            for job_id, task in list(w.tasks.items()):
                if job_id == current:
                    self._outcomes.append(self._death_outcome(w, task.id, task.attempts, exitcode))
                else:
                    self._outcomes.append(Outcome(job_id, task.attempts, OutcomeKind.RELEASED, worker=w.pid))
            w.tasks.clear()
            self._selector.unregister(w.reports_in.fileno())
            self._selector.unregister(w.process.sentinel)
            w.reports_in.close()
            w.tasks_out.close()
            if not (w.retiring and exitcode == 0) and w.kill is None:
                log.warning("worker %d died (%s)", w.pid, signal_name(exitcode))
            if self.stopping:
                self.pool.remove(w)
            else:
                self._start_worker(w.slot)

    def _death_outcome(self, w: WorkerProcess, job_id: int, attempts: int, exitcode: int | None) -> Outcome:
        assert self.pool is not None
        output = self.pool.output_of_current(w, self.settings.max_output_bytes)
        self._log_output(job_id, output)
        wall = time.time()
        task, started = self.pool.current(w)
        ran_seconds = time.monotonic() - started if task else None
        started_at = wall - ran_seconds if ran_seconds is not None else None
        fields = job_fields(task or w.tasks.get(job_id), "", ran_seconds)
        if w.kill is not None:
            fields["event"] = f"job_{w.kill.error.type.lower()}"
            log.warning("job %d %s: %s", job_id, w.kill.kind.value, w.kill.error.message, extra=fields)
            return Outcome(
                job_id,
                attempts,
                w.kill.kind,
                error=w.kill.error,
                retriable=w.kill.retriable,
                worker=w.pid,
                output=output,
                finished_at=wall,
                started_at=started_at,
            )
        cause = signal_name(exitcode)
        if exitcode == -signal.SIGKILL and self._oom.killed_since_last_look():
            cause += ", out of memory (the kernel's OOM killer)"
        error = JobError("WorkerDied", f"worker {w.pid} died while running the job: {cause}")
        fields["event"] = "job_worker_died"
        log.warning("job %d failed: %s", job_id, error.message, extra=fields)
        pause = self._crash_loop.worker_died(job_id, cause)
        if pause and self.dispatcher is not None:
            self.dispatcher.paused_until = time.time() + pause
        return Outcome(
            job_id,
            attempts,
            OutcomeKind.FAILED,
            error=error,
            worker=w.pid,
            output=output,
            finished_at=wall,
            started_at=started_at,
            crashed=exitcode is not None and exitcode < 0,  # a signal: segfault, SIGKILL, OOM
            max_crashes=self.settings.max_crashes,
        )

    def _enforce_deadlines(self, now: float) -> None:
        assert self.pool is not None
        self.pool.escalate(now)
        grace = self.settings.kill_grace_seconds
        for w in self.pool.workers:
            task, started = self.pool.current(w)
            if task is not None and task.timeout and now - started > task.timeout:
                error = JobError("JobTimeout", f"job exceeded its timeout of {task.timeout:g}s")
                self.pool.order_kill(w, KillOrder(OutcomeKind.FAILED, error, True), now, grace)
        if self._drain_deadline is not None and now >= self._drain_deadline:
            drained = JobError("Drained", "supervisor stopped before the job finished")
            for w in self.pool.workers:
                if w.tasks:
                    self.pool.order_kill(w, KillOrder(OutcomeKind.RELEASED, drained, False), now, grace)

    def _note_workers(self, now: float) -> None:
        """Write ``running`` (with the worker's pid and its real start time) each claimed job a
        worker has run for NOTE_WORKER_AFTER seconds: one write per such job. A shorter job goes
        from claimed to its end in one write, with the same start time."""
        assert self.pool is not None
        starts = []
        wall_minus_mono = time.time() - now
        for w in self.pool.workers:
            task, started = self.pool.current(w)
            if task is None or now - started < NOTE_WORKER_AFTER or self._noted.get(w.slot) == (task.id, task.attempts):
                continue
            self._noted[w.slot] = (task.id, task.attempts)
            starts.append(JobStart(task.id, task.attempts, w.pid, started + wall_minus_mono))
        if starts:
            self.store.start(self.id, starts)

    def _publish_output(self, now: float) -> None:
        """Store what each job running for OUTPUT_EVERY_SECONDS or more has printed so far,
        once a second while it grows: `jobq logs`, the API and the dashboard follow it live."""
        assert self.pool is not None
        if now < self._next_output_at:
            return
        self._next_output_at = now + OUTPUT_EVERY_SECONDS
        updates = []
        for w in self.pool.workers:
            task, started = self.pool.current(w)
            if task is None or now - started < OUTPUT_EVERY_SECONDS:
                continue
            size = self.pool.output_size(w)
            if self._published.get(w.slot) == (task.id, task.attempts, size):
                continue
            self._published[w.slot] = (task.id, task.attempts, size)
            updates.append(OutputUpdate(task.id, task.attempts, self.pool.output_of_current(w, self.settings.max_output_bytes)))
        if updates:
            self.store.set_output(self.id, updates)

    def _cancel_running(self, job_ids: set[int]) -> None:
        """Cancels requested of jobs we hold: a job no worker has started is withdrawn (it never
        starts) and ends cancelled; a running one has its worker ended."""
        assert self.pool is not None
        now = time.monotonic()
        for w in self.pool.workers:
            task, _ = self.pool.current(w)
            if task is not None and task.id in job_ids:
                order = KillOrder(OutcomeKind.CANCELLED, CANCELLED_BY_REQUEST, False)
                self.pool.order_kill(w, order, now, self.settings.kill_grace_seconds)
            for job_id in job_ids & set(w.tasks):
                withdrawn = self.pool.withdraw(w, job_id)
                if withdrawn is not None:
                    log.info("job %d: cancelled before it started", job_id, extra=job_fields(withdrawn, "job_cancelled"))
                    self._outcomes.append(
                        Outcome(job_id, withdrawn.attempts, OutcomeKind.CANCELLED, error=CANCELLED_BY_REQUEST, retriable=False)
                    )
