"""What the handles and waiters need of a queue and a group, as protocols, so that they do
not import :mod:`jobq.client.queue` (which imports them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.config import Settings
from ..core.models import JobRecord
from ..store import Store
from ..worker.chunks import ChunkLayout


class QueueLike(Protocol):
    """The part of :class:`jobq.Queue` that handles, waiters and ``@task`` use."""

    settings: Settings
    store: Store

    @property
    def path(self) -> str: ...

    def record(self, job_id: Any) -> JobRecord: ...

    def logs(self, job_id: Any) -> str: ...

    def cancel(self, *job_ids: Any) -> dict[int, str]: ...

    # Submitting, for @task and asyncio: the signatures are Queue.submit's, map's and asubmit's.
    @property
    def submit(self) -> Callable[..., Any]: ...

    @property
    def map(self) -> Callable[..., Any]: ...

    @property
    def asubmit(self) -> Callable[..., Any]: ...


class JobLike(Protocol):
    """A handle on one job (:class:`jobq.Job`)."""

    queue: QueueLike
    id: int


class GroupLike(Protocol):
    """A handle on the jobs of one map (:class:`jobq.Group`)."""

    queue: QueueLike
    id: str | None
    job_ids: list[int]
    layout: ChunkLayout | None
    done_jobs: int

    def finished(self) -> bool: ...

    def results(self) -> list[Any]: ...
