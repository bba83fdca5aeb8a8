"""How a supervisor books what its workers report (a mixin of
:class:`~jobq.supervisor.Supervisor`): results the workers wrote, results it must write for
them, progress, jobs given back unstarted, and workers retiring."""

from __future__ import annotations

import logging
from typing import Any

from ..core.models import Outcome, OutcomeKind, iso
from ..store import ProgressUpdate
from ..worker.messages import Finished, Progress, Result, Retire, Unstarted, Unwritten
from .crashloop import CrashLoop
from .dispatch import Dispatcher
from .logformat import job_fields
from .workerpool import WorkerPool, WorkerProcess

log = logging.getLogger("jobq.supervisor")


class ReportHandling:
    """Reads and books the workers' reports."""

    pool: WorkerPool | None
    dispatcher: Dispatcher | None
    _outcomes: list[Outcome]
    _progress: dict[int, ProgressUpdate]
    _crash_loop: CrashLoop

    def _read_reports(self) -> None:
        assert self.pool is not None
        for w in self.pool.workers:
            self._read_worker(w)

    def _read_worker(self, w: WorkerProcess) -> None:
        for report in w.reports():
            self._handle_report(w, report)

    def _handle_report(self, w: WorkerProcess, report: Any) -> None:
        if isinstance(report, Finished):  # written by the worker itself
            tasks, record = w.tasks, self.dispatcher.record_duration if self.dispatcher else None
            debug = log.isEnabledFor(logging.DEBUG)
            for result in report.results:
                if result.error is None and not result.output and not debug and record is not None:
                    if tasks.pop(result.job_id, None) is not None:  # nothing to log: _account's bookkeeping alone
                        record(result.duration_seconds)
                else:
                    self._account(w, result)
            for job_id in report.rejected:
                log.warning("job %d: result dropped, the job was taken back from this supervisor", job_id)
        elif isinstance(report, Unwritten):  # results the worker could not write: we write them
            ids = [r.job_id for r in report.results]
            log.warning(
                "worker %d could not write the results of jobs %s (%s); the supervisor writes them",
                w.pid,
                ", ".join(map(str, ids)),
                report.reason,
            )
            for result in report.results:
                if self._account(w, result):
                    self._outcomes.append(result.outcome(w.pid))
        elif isinstance(report, Progress):
            self._progress[report.job_id] = ProgressUpdate(report.job_id, report.attempt, report.fraction, report.message)
        elif isinstance(report, Unstarted):
            for job_id in report.job_ids:
                task = w.tasks.pop(job_id, None)
                if task is not None:
                    self._outcomes.append(Outcome(job_id, task.attempts, OutcomeKind.RELEASED, worker=w.pid))
        elif isinstance(report, Retire):
            w.retiring = True
            log.info("worker %d retires: %s", w.pid, report.reason)

    def _account(self, w: WorkerProcess, result: Result) -> bool:
        """Book a job a worker reports finished; False when it is no longer the worker's."""
        assert self.dispatcher is not None
        task = w.tasks.pop(result.job_id, None)
        if task is None:
            return False
        self.dispatcher.record_duration(result.duration_seconds)
        self._crash_loop.job_ended()
        self._log_output(result.job_id, result.output)
        if result.wake_at is not None:
            fields = job_fields(task, "job_suspended", result.duration_seconds)
            why = f"for event {result.wait_key!r}" if result.wait_key is not None else "sleeping"
            log.info("job %d waits %s until %s", result.job_id, why, iso(result.wake_at), extra=fields)
        elif result.error is not None:
            fields = job_fields(task, "job_failed", result.duration_seconds)
            log.warning("job %d failed: %s: %s", result.job_id, result.error.type, result.error.message, extra=fields)
        elif log.isEnabledFor(logging.DEBUG):
            fields = job_fields(task, "job_succeeded", result.duration_seconds)
            log.debug("job %d succeeded in %.3fs", result.job_id, result.duration_seconds, extra=fields)
        return True

    @staticmethod
    def _log_output(job_id: int, output: str | None) -> None:
        if output and log.isEnabledFor(logging.INFO):
            for line in output.splitlines():
                log.info("[job %d] %s", job_id, line, extra={"event": "job_output", "job_id": job_id})
