"""The store contract of durable steps and events (issue 16), part of :class:`Store`."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..core.steps import StepRecord, WaitState


class StepsContract(ABC):
    """What durable steps ask of a backend. Every write is one short transaction; those a
    worker makes for its job are fenced on (job, running, owner, attempt) like a finish."""

    @abstractmethod
    def load_steps(self, job_id: int) -> list[StepRecord]:
        """The job's recorded steps, in call order."""

    @abstractmethod
    def record_step(self, owner: str, step: StepRecord, replayed: int = 0) -> bool:
        """Record (or overwrite) ``step`` for the attempt ``step.attempt`` of its job, fenced:
        False (nothing written) when that attempt is no longer ``owner``'s. ``replayed``
        steps are added to the replay count in the same transaction."""

    @abstractmethod
    def count_replayed(self, job_id: int, replayed: int) -> None:
        """Add to the count of steps replayed (an attempt that replayed and wrote nothing)."""

    @abstractmethod
    def take_event(
        self, owner: str, step: StepRecord, key: str, deadline: float | None, now: float
    ) -> tuple[WaitState | None, str | None]:
        """An event wait of the job (fenced like :meth:`record_step`): consume the oldest
        unconsumed event of ``key`` and record the step received, with its payload; else,
        past ``deadline``, record it timed out; else record it waiting on ``key``. Returns
        the state and the payload; (None, None) when the fence failed (nothing written)."""

    @abstractmethod
    def send_event(self, key: str, payload_json: str, now: float) -> int:
        """Store an event and make the jobs waiting for ``key`` due at once; its id."""

    @abstractmethod
    def events(self, key: str | None, limit: int) -> list[tuple[int, str, str, float, int | None, float | None]]:
        """Events, newest first: (id, key, payload, created_at, consumed_by, consumed_at)."""

    @abstractmethod
    def purge_events(self, created_before: float, consumed_only: bool) -> int:
        """Delete events sent before ``created_before`` (only consumed ones with ``consumed_only``)."""

    @abstractmethod
    def waiting_for(self, job_id: int) -> str | None:
        """The event key the job waits for, if it waits for one."""

    @abstractmethod
    def retry_from_step(self, job_id: int, name: str | None, now: float) -> bool:
        """Requeue a failed, cancelled or succeeded job keeping the steps recorded before the
        first call of ``name`` (all of them when None); False when the job is not in a state
        that can be retried. Raises ``ValidationError`` when it recorded no step ``name``."""

    @abstractmethod
    def step_totals(self) -> tuple[int, int]:
        """(steps run and recorded, steps replayed) since the database was made."""
