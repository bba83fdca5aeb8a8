"""The store contract: everything jobq asks of a database. All SQL lives behind it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..core.models import ClaimedJob, JobRecord, Outcome
from .records import (
    GroupInfo,
    JobResult,
    JobStart,
    OutputUpdate,
    ProgressUpdate,
    QueueInfo,
    Schedule,
    Submitted,
    SupervisorInfo,
)
from .steps_base import StepsContract

if TYPE_CHECKING:
    from ..core.spec import JobSpec  # pydantic: not imported to read jobs


class Store(StepsContract, ABC):
    """What jobq needs from a backend. One instance per process; safe to use after fork
    (a child opens its own connection and never touches its parent's)."""

    url: str

    # -- submitting and reading ---------------------------------------------------------
    @abstractmethod
    def submit(
        self, specs: Iterable[JobSpec], now: float, group: bool = False, conn: Any = None
    ) -> tuple[list[Submitted], str | None]:
        """Insert jobs in one transaction (``conn``: the caller's open one); their ids (and group id)."""

    @abstractmethod
    def submit_stream(
        self,
        base: JobSpec,
        args_iter: Iterable[list[Any]],
        now: float,
        group: bool,
        max_payload_bytes: int,
        conn: Any = None,
        on_commit: Callable[[], None] | None = None,
    ) -> tuple[list[int], str | None]:
        """One job per argument list of ``args_iter`` (the rest as in ``base``), as a new group when
        ``group``; ValidationError for an item not JSON or too large. ``conn``: as in :meth:`submit`.
        ``on_commit`` runs after each batch of jobs commits (not in the caller's transaction)."""

    @abstractmethod
    def get(self, job_id: int) -> JobRecord | None:
        """The job's full record, or None."""

    @abstractmethod
    def outcome(self, job_id: int) -> JobResult | None:
        """State, result and error of a job in one read, or None when no such job (joins)."""

    @abstractmethod
    def get_states(self, job_ids: Sequence[int]) -> dict[int, str]:
        """The state of each existing job among ``job_ids``."""

    @abstractmethod
    def counts(self) -> dict[str, dict[str, int]]:
        """Counts by queue and state (states with zero may be missing)."""

    @abstractmethod
    def list_jobs(self, state: str | None, queue: str | None, limit: int) -> list[JobRecord]:
        """Newest first."""

    @abstractmethod
    def output(self, job_id: int) -> str | None:
        """The captured output of the job's last attempt (None when none was captured)."""

    @abstractmethod
    def count_jobs(self) -> int:
        """How many jobs the store holds."""

    # -- groups -------------------------------------------------------------------------
    @abstractmethod
    def group_jobs(self, group_id: str) -> list[int] | None:
        """The job ids of a group in input order, or None when no such group exists."""

    @abstractmethod
    def group_results(self, group_id: str) -> list[JobResult] | None:
        """State, result and error of each job of the group in input order."""

    @abstractmethod
    def group_info(self, group_id: str) -> GroupInfo | None:
        """The group's size and status, or None when no such group exists."""

    @abstractmethod
    def group_summary(self, group_id: str) -> dict[str, int] | None:
        """Counts by state of the group's jobs, or None when no such group exists."""

    # -- supervisors --------------------------------------------------------------------
    @abstractmethod
    def register_supervisor(self, info: SupervisorInfo) -> None: ...

    @abstractmethod
    def unregister_supervisor(self, supervisor_id: str) -> None: ...

    @abstractmethod
    def supervisors(self) -> list[SupervisorInfo]: ...

    @abstractmethod
    def heartbeat(self, supervisor_id: str, now: float, lease_until: float) -> list[int]:
        """Renew the supervisor's heartbeat and its jobs' leases; returns the ids of its
        running jobs whose cancellation was requested."""

    # -- claiming and finishing ---------------------------------------------------------
    @abstractmethod
    def has_runnable(self, queues: Sequence[str] | None, now: float, slots: int | None = None) -> bool:
        """Whether a claim could find a job now (a read: no write lock); ``slots``: the most
        cpus a job may need to count."""

    @abstractmethod
    def claim(
        self,
        owner: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease_until: float,
        slots: int | None = None,
    ) -> list[ClaimedJob]:
        """Atomically move up to ``limit`` due jobs to running for ``owner``, skipping paused
        queues and keeping each queue's concurrency cap, rate and partition shares across all
        supervisors; none needing more than ``slots`` cpus (None: any)."""

    @abstractmethod
    def finish(self, owner: str, outcomes: Sequence[Outcome], now: float) -> list[int]:
        """Write outcomes fenced on (id, running, owner, attempts); returns the ids whose
        fence failed (the job was taken back from us) and whose outcome was dropped."""

    @abstractmethod
    def set_progress(self, owner: str, updates: Sequence[ProgressUpdate]) -> None:
        """The latest progress of running jobs of ``owner``."""

    @abstractmethod
    def set_output(self, owner: str, updates: Sequence[OutputUpdate]) -> None:
        """What running jobs of ``owner`` printed so far (their final output replaces it)."""

    @abstractmethod
    def start(self, owner: str, starts: Sequence[JobStart]) -> list[int]:
        """Claimed jobs of ``owner`` that a worker started: each becomes ``running`` with its
        worker and start time (``jobq.Process.pid`` reads it). Returns the ids written."""

    @abstractmethod
    def requeue_lost(
        self, now: float, owner: str | None = None, expired_before: float | None = None, reason: str = ""
    ) -> list[int]:
        """Take back running jobs of a dead ``owner`` or with a lease expired before
        ``expired_before``: requeue them (or fail them when out of attempts)."""

    @abstractmethod
    def prune_supervisors(self, heartbeat_before: float) -> list[str]:
        """Forget supervisors whose last heartbeat is older than ``heartbeat_before``."""

    # -- user actions -------------------------------------------------------------------
    @abstractmethod
    def cancel(self, job_ids: Sequence[int], now: float) -> dict[int, str]:
        """Cancel jobs: unfinished-not-running ones at once, running ones by request.
        Returns each id's resulting state (``cancelling`` for a running one)."""

    @abstractmethod
    def retry(
        self, job_ids: Sequence[int] | None, now: float, queue: str | None = None, include_quarantined: bool = False
    ) -> list[int]:
        """Requeue failed or cancelled jobs (``job_ids`` None: every failed one, but the
        quarantined unless ``include_quarantined``)."""

    @abstractmethod
    def purge(self, now: float, states: Sequence[str], older_than: float | None, default_ttl: float | None = None) -> int:
        """Delete finished jobs finished before ``now - older_than`` (or past their own
        ``result_ttl`` / ``default_ttl`` when ``older_than`` is None)."""

    # -- schedules ----------------------------------------------------------------------
    @abstractmethod
    def upsert_schedule(self, schedule: Schedule) -> None: ...

    @abstractmethod
    def schedules(self) -> list[Schedule]: ...

    @abstractmethod
    def enqueue_due_schedules(self, now: float, next_after: Any) -> list[int]:
        """Enqueue one job per due schedule and move each to its next time after ``now``
        (``next_after(schedule, now) -> float``); exactly once across supervisors."""

    # -- queue controls -----------------------------------------------------------------
    @abstractmethod
    def set_queue_limit(self, queue: str, concurrency: int | None, now: float) -> None:
        """Cap the jobs of ``queue`` running at once across all supervisors (None: no cap)."""

    @abstractmethod
    def set_queue_paused(self, queue: str, paused: bool, now: float) -> None:
        """Pause (no supervisor claims from it) or resume ``queue``."""

    @abstractmethod
    def set_queue_rate(self, queue: str, count: int | None, per_seconds: float | None, now: float) -> None:
        """Limit the starts of ``queue`` to ``count`` per ``per_seconds`` across all
        supervisors (a token bucket whose burst is ``count``; None: no rate)."""

    @abstractmethod
    def set_partition_limit(self, queue: str, per_partition: int | None, now: float) -> None:
        """Cap the held jobs of each partition of ``queue`` across all supervisors (None: no cap)."""

    @abstractmethod
    def queue_controls(self) -> list[QueueInfo]:
        """Every queue with a stored cap, pause flag, rate or partition cap."""

    @abstractmethod
    def partition_counts(self, queue: str, top: int) -> list[tuple[str, int, int]]:
        """(partition, queued, running) of the ``top`` partitions of ``queue`` with the most
        unfinished jobs (claimed counts as running)."""

    # -- dashboard (issue 10): each served by an index or a table sized by time --------------
    @abstractmethod
    def jobs_page(
        self,
        state: str | None = None,
        queue: str | None = None,
        target: str | None = None,
        name: str | None = None,
        before: int | None = None,
        limit: int = 50,
        contains: str | None = None,
    ) -> list[JobRecord]:
        """Jobs matching every given filter (exact values; ``contains``: text in the arguments or result) below ``before``."""

    @abstractmethod
    def dependents(self, job_id: int) -> list[int]:
        """Ids of the jobs that depend on ``job_id``."""

    @abstractmethod
    def groups_page(self, before: int | None, limit: int) -> list[tuple[str, int, float]]:
        """(group id, size, created_at) of groups with numbers below ``before``, newest first."""

    @abstractmethod
    def group_failed(self, group_id: str, limit: int) -> list[JobRecord]:
        """The group's failed or cancelled jobs, in input order."""

    @abstractmethod
    def delete_jobs(self, job_ids: Sequence[int]) -> list[int]:
        """Delete the finished jobs among ``job_ids``; returns the ids deleted."""

    @abstractmethod
    def oldest_queued(self, queues: Sequence[str]) -> dict[str, float]:
        """Per queue, the earliest ``run_at`` of its queued jobs (queues with none are left out)."""

    @abstractmethod
    def busy_workers(self) -> dict[str, int]:
        """Running jobs per supervisor id."""

    @abstractmethod
    def job_totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(queue, state) -> (jobs deleted in that state, jobs retried out of that finished
        state), ever: with :meth:`counts` they give counters that never go down."""

    @abstractmethod
    def finished_by_minute(self, since_minute: int, bucket: int = 1, queue: str | None = None) -> list[tuple[int, str, int]]:
        """(first minute of a ``bucket`` of minutes since the epoch, kind, attempts) of attempts that ended
        from ``since_minute`` on (of ``queue``, else all); kind is succeeded, failed or cancelled."""

    @abstractmethod
    def histograms(self) -> dict[str, tuple[int, float, float, list[int], list[int]]]:
        """Per queue: (attempts, duration sum, wait sum, cumulative duration and wait counts
        per bucket of :data:`jobq.store.sql_dashboard.BUCKETS`), ever."""

    @abstractmethod
    def pause_schedule(self, name: str, now: float) -> bool:
        """Stop enqueueing the schedule ``name`` (False when no such schedule)."""

    @abstractmethod
    def resume_schedule(self, name: str, next_run_at: float) -> bool:
        """Enqueue the paused schedule ``name`` again from ``next_run_at`` (False unless paused)."""

    @abstractmethod
    def paused_schedules(self) -> set[str]:
        """Names of the paused schedules."""

    @abstractmethod
    def compact_stats(self, before_minute: int) -> int:
        """Fold per-minute figures older than ``before_minute`` into all-time rows."""

    def tune_for_runner(self, lease_seconds: float | None = None) -> None:  # noqa: B027 - optional hook
        """Called once by a supervisor, and by each of its workers, before they write: backend
        session settings for writes that may be lost to a server crash and redone."""

    def flush_figures(self) -> None:  # noqa: B027 - optional hook
        """Write the per-minute figures of finished attempts this process booked and has not
        written yet (they are written with finishes, at most once a second)."""

    def checkpoint(self) -> None:  # noqa: B027 - optional hook
        """Housekeeping a backend wants done off the job path, now and then (SQLite: WAL
        checkpoint). Run by the supervisor's checkpointer process."""

    @property
    def wants_checkpointer(self) -> bool:
        """Whether supervisors should run :meth:`checkpoint` in a process of their own."""
        return type(self).checkpoint is not Store.checkpoint

    def wait_for_change(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, or less when jobs finish (where the backend can tell)."""
        import time

        time.sleep(timeout)

    def wait_for_commit(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, or less once another connection commits anything
        (where the backend can tell cheaply); by default :meth:`wait_for_change`."""
        self.wait_for_change(timeout)

    def wakeup_fileno(self) -> int | None:
        """A descriptor that becomes readable when jobs are submitted (None: poll)."""
        return None

    def drain_wakeups(self) -> None:  # noqa: B027 - optional hook: nothing to drain by default
        """Consume pending wake-ups of :meth:`wakeup_fileno`."""

    @abstractmethod
    def close(self) -> None: ...
