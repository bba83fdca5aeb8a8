"""Messages between a supervisor and its workers: typed records, pickled over two one-way
pipes (tasks down, reports up).

Down, the supervisor sends a list of :class:`Task` (a batch) or ``None`` (stop). Up, a
worker sends :class:`Finished` (results it wrote itself), :class:`Unwritten` (results it
could not write: the supervisor writes them), :class:`Progress`, :class:`Unstarted` and
:class:`Retire`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from ..core.models import ClaimedJob, JobError, Outcome, OutcomeKind

# Errors that another attempt would meet again: the job fails at once, retries or not.
NOT_RETRIED = frozenset({"TargetNotAllowed", "StepMismatch", "StepNotSerializable"})


class Task(NamedTuple):
    """One claimed job for a worker to run."""

    job_id: int
    attempt: int
    target: str
    args_json: str
    kwargs_json: str
    queue: str = ""
    trace: str | None = None  # the submitter's W3C trace context (JSON), when it was traced
    memory_mb: int | None = None


# Outcome's fields after wait_key (crashed, max_crashes) at their defaults: a worker's result never sets them.
_OUTCOME_DEFAULT_TAIL = tuple(Outcome._field_defaults[f] for f in Outcome._fields[Outcome._fields.index("wait_key") + 1 :])


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
        # Built in C (a named tuple's own constructor is Python code): once per job, in every worker.
        job_id, attempt, result_json, error, output, started_at, finished_at, _, wake_at, wait_key = self
        if wake_at is not None:
            kind = OutcomeKind.SUSPENDED
        else:
            kind = OutcomeKind.SUCCEEDED if error is None else OutcomeKind.FAILED
        retriable = error is None or error.type not in NOT_RETRIED
        return tuple.__new__(
            Outcome,
            (job_id, attempt, kind, result_json, error, retriable, worker_pid, output, finished_at, started_at)
            + (wake_at, wait_key, *_OUTCOME_DEFAULT_TAIL),
        )


def tasks_for(jobs: Iterable[ClaimedJob]) -> list[Task]:
    """The tasks of claimed jobs (built in C: a named tuple's own constructor is Python code)."""
    return [
        tuple.__new__(Task, (j.id, j.attempts, j.target, j.args_json, j.kwargs_json, j.queue, j.trace, j.memory_mb)) for j in jobs
    ]


def task_rows(tasks: list[Task]) -> list[tuple[Any, ...]]:
    """A batch of tasks as plain tuples for the pipe: a named tuple pickles through Python
    code (``copyreg``), about 1 µs an item; a plain one in C, a tenth of that."""
    return [tuple(t) for t in tasks]


def tasks_of(rows: list[tuple[Any, ...]]) -> list[Task]:
    """The tasks of a batch that :func:`task_rows` sent (the fields as sent, no copy)."""
    return [tuple.__new__(Task, r) for r in rows]


def _results_of(rows: list[tuple[Any, ...]]) -> list[Result]:
    return [tuple.__new__(Result, r) for r in rows]


def _finished(rows: list[tuple[Any, ...]], rejected: list[int]) -> Finished:
    return Finished(_results_of(rows), rejected)


def _unwritten(rows: list[tuple[Any, ...]], reason: str) -> Unwritten:
    return Unwritten(_results_of(rows), reason)


class Finished(NamedTuple):
    """Results the worker wrote to the store itself; ``rejected``: ids whose fence failed."""

    results: list[Result]
    rejected: list[int]

    def __reduce__(self) -> tuple[Any, ...]:  # the results go as plain tuples (see task_rows)
        return (_finished, ([tuple(r) for r in self.results], self.rejected))


class Unwritten(NamedTuple):
    """Results the worker could not write (``reason``): the supervisor writes them."""

    results: list[Result]
    reason: str

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unwritten, ([tuple(r) for r in self.results], self.reason))


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
