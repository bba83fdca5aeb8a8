"""Messages between a supervisor and its workers: typed records, pickled over two one-way
pipes (tasks down, reports up).

Down, the supervisor sends a list of :class:`Task` (a batch) or ``None`` (stop). Up, a
worker sends :class:`Finished` (results it wrote itself), :class:`Unwritten` (results it
could not write: the supervisor writes them), :class:`Progress`, :class:`Unstarted` and
:class:`Retire`."""

from __future__ import annotations

from typing import NamedTuple

from ..core.models import JobError, Outcome, OutcomeKind

# Errors that another attempt would meet again: the job fails at once, retries or not.
NOT_RETRIED = frozenset({"TargetNotAllowed", "StepMismatch", "StepNotSerializable"})


class Task(NamedTuple):
    """One claimed job for a worker to run."""

    job_id: int
    attempt: int
    target: str
    args_json: str
    kwargs_json: str
    memory_mb: int | None = None


class Result(NamedTuple):
    """One attempt a worker ran: the result's JSON text, or the error."""

    job_id: int
    attempt: int
    result_json: str | None
    error: JobError | None
    output: str
    started_at: float  # wall clock, stored
    finished_at: float  # wall clock, stored
    duration_seconds: float  # monotonic clock
    #: a durable sleep or event wait ended the attempt: when the job runs again, and its key
    wake_at: float | None = None
    wait_key: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def outcome(self, worker_pid: int) -> Outcome:
        """The store's :class:`Outcome` of this result."""
        if self.wake_at is not None:
            kind = OutcomeKind.SUSPENDED
        else:
            kind = OutcomeKind.SUCCEEDED if self.error is None else OutcomeKind.FAILED
        return Outcome(
            self.job_id,
            self.attempt,
            kind,
            result_json=self.result_json,
            error=self.error,
            retriable=self.error is None or self.error.type not in NOT_RETRIED,
            worker=worker_pid,
            output=self.output,
            finished_at=self.finished_at,
            started_at=self.started_at,
            wake_at=self.wake_at,
            wait_key=self.wait_key,
        )


class Finished(NamedTuple):
    """Results the worker wrote to the store itself; ``rejected``: ids whose fence failed."""

    results: list[Result]
    rejected: list[int]


class Unwritten(NamedTuple):
    """Results the worker could not write (``reason``): the supervisor writes them."""

    results: list[Result]
    reason: str


class Progress(NamedTuple):
    """A running job's latest progress."""

    job_id: int
    attempt: int
    fraction: float
    message: str


class Unstarted(NamedTuple):
    """Jobs of a batch the worker gave back without starting them (draining, retiring)."""

    job_ids: list[int]


class Retire(NamedTuple):
    """The worker exits after this message (max jobs or memory reached)."""

    reason: str


Report = Finished | Unwritten | Progress | Unstarted | Retire
