"""Handles on stored jobs: :class:`Job` (one job, joined like a ``multiprocessing.Process``)
and :class:`Group` (the jobs of one map, joined in input order)."""

from __future__ import annotations

import time
from typing import Any

from ..core.errors import GroupIncomplete, JobNotFound, StoreError
from ..core.models import FINISHED_STATES, JobRecord, State
from ..worker.chunks import ChunkLayout, failed_index, item_counts
from .failures import job_failed
from .polling import Backoff
from .protocols import QueueLike


def _job_id(job_id: Any) -> int:
    if isinstance(job_id, Job):
        return job_id.id
    if isinstance(job_id, bool):
        raise JobNotFound(job_id)
    if isinstance(job_id, int):
        return job_id
    text = str(job_id).strip()
    if text.isdigit() and len(text) < 19:
        return int(text)
    raise JobNotFound(job_id)


class Job:
    """A submitted job. Attributes are read fresh from the store on each access."""

    def __init__(self, queue: QueueLike, job_id: int, existing: bool = False) -> None:
        self.queue = queue
        self.id = job_id
        self.existing = existing

    def __repr__(self) -> str:
        return f"<jobq.Job {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other.queue.path == self.queue.path

    def __hash__(self) -> int:
        return hash(self.id)

    def refresh(self) -> JobRecord:
        """The job's full record now."""
        return self.queue.record(self.id)

    @property
    def state(self) -> str:
        states = self.queue.store.get_states([self.id])
        if self.id not in states:
            raise JobNotFound(self.id)
        return states[self.id]

    @property
    def attempts(self) -> int:
        return self.refresh().attempts

    @property
    def name(self) -> str | None:
        return self.refresh().name

    @property
    def result(self) -> Any:
        """The return value (None until the job succeeded)."""
        return self.refresh().result

    @property
    def error(self) -> dict[str, Any] | None:
        return self.refresh().error

    def logs(self) -> str:
        return self.queue.logs(self.id)

    def cancel(self) -> str:
        """Cancel this job; returns ``cancelled``, ``cancelling`` (running) or its final state."""
        return self.queue.cancel(self.id).get(self.id, "unknown")

    def join(self, timeout: float | None = None) -> Any:
        """Wait for the job to finish; return its value, or raise :class:`JobFailed`
        (failed or cancelled) or :class:`TimeoutError` when ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pace = Backoff(first_seconds=0.0002, factor=1.25)
        while True:
            found = self.queue.store.outcome(self.id)  # one read a look
            if found is None:
                raise JobNotFound(self.id)
            state = found.state
            if state == State.SUCCEEDED:
                return found.result
            if state.finished:
                raise job_failed(found.id, state, found.error)
            delay = pace.next()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {self.id} still {state} after {timeout:g}s")
                delay = min(delay, left)
            self.queue.store.wait_for_commit(delay)

    async def ajoin(self, timeout: float | None = None) -> Any:
        """:meth:`join` for asyncio code: waits without blocking the event loop."""
        from .aio import ajoin_job

        return await ajoin_job(self, timeout)


class Group:
    """The jobs of one :meth:`Queue.map`, in input order. ``len()`` and :meth:`counts` are in
    items (a chunked map's jobs hold ``chunksize`` items each; ``layout`` says how)."""

    def __init__(self, queue: QueueLike, group_id: str | None, job_ids: list[int], layout: ChunkLayout | None = None) -> None:
        self.queue = queue
        self.id = group_id
        self.job_ids = list(job_ids)
        self.layout = layout
        self.done_jobs = 0  # finished jobs at the last look (``finished()``)
        self._size = len(self.job_ids)

    def __repr__(self) -> str:
        return f"<jobq.Group {self.id} of {len(self)}>"

    def __len__(self) -> int:
        return self.layout.items if self.layout is not None else len(self.job_ids)

    @property
    def chunksize(self) -> int:
        """Items per job (1 unless the map was chunked)."""
        return self.layout.chunksize if self.layout is not None else 1

    @property
    def jobs(self) -> list[Job]:
        return [Job(self.queue, i) for i in self.job_ids]

    def counts(self) -> dict[str, int]:
        """Counts of the group's items by state (of its jobs, unless the map was chunked)."""
        summary = self._job_counts()
        if self.layout is None:
            return summary
        last = self.queue.store.get_states(self.job_ids[-1:]).get(self.job_ids[-1]) if self.job_ids else None
        return item_counts(self.layout, summary, last, len(self.job_ids))

    async def ajoin(self, timeout: float | None = None) -> list[Any]:
        """:meth:`join` for asyncio code: waits without blocking the event loop."""
        from .aio import ajoin_group

        return await ajoin_group(self, timeout)

    def _job_counts(self) -> dict[str, int]:
        summary = self.queue.store.group_summary(str(self.id)) if self.id else None
        if summary is None:
            states = self.queue.store.get_states(self.job_ids)
            summary = {}
            for s in states.values():
                summary[s] = summary.get(s, 0) + 1
        return summary

    def join(self, timeout: float | None = None) -> list[Any]:
        """Results in input order (one per item, a chunked map's too); raises :class:`JobFailed`
        naming the failed item's index, :class:`GroupIncomplete` when the group's submitter
        stopped before submitting it whole, or :class:`TimeoutError` when ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pace, seen = Backoff(cap_seconds=0.2, factor=1.3), -1
        while True:
            looked = time.monotonic()
            if self.finished():
                break
            if self.done_jobs != seen:  # moving: look again soon
                seen = self.done_jobs
                pace.progress()
            # A big group's count is not free: spend at most a sixth of the time on it.
            delay = max(pace.next(), 5 * (time.monotonic() - looked))
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"group {self.id}: {self.done_jobs}/{self._size} jobs finished after {timeout:g}s")
                delay = min(delay, left)
            time.sleep(delay)
        return self.results()

    def finished(self) -> bool:
        """Whether a join would return now: every job finished, or one failed or was cancelled.
        Raises :class:`GroupIncomplete` when the submitter stopped before submitting it whole."""
        info = self.queue.store.group_info(str(self.id)) if self.id else None
        counts = self._job_counts()
        size = self._size = info.size if info is not None else len(self.job_ids)
        self.done_jobs = sum(counts.get(s, 0) for s in FINISHED_STATES)
        failed = bool(counts.get("failed") or counts.get("cancelled"))
        if info is not None and info.status == "open" and not failed:
            idle = time.time() - info.updated_at
            if self.done_jobs >= size and idle > self.queue.settings.lease_seconds:
                raise GroupIncomplete(self.id, size, idle)
            return False
        return failed or self.done_jobs >= size

    def results(self) -> list[Any]:
        """The results now, in input order: raises :class:`JobFailed` (naming the item's
        index) for the first failed item, :class:`StoreError` while any is missing."""
        rows = self.queue.store.group_results(str(self.id)) if self.id else None
        if rows is None:
            rows = [r for r in (self.queue.store.outcome(i) for i in self.job_ids) if r is not None]
        results: list[Any] = []
        for position, row in enumerate(rows):
            if row is None:
                continue
            if row.state in (State.FAILED, State.CANCELLED):
                index = position if self.layout is None else failed_index(self.layout, position, row.error)
                raise job_failed(row.id, row.state, row.error, index=index)
            if self.layout is None:
                results.append(row.result)
            elif row.state == State.SUCCEEDED:
                results.extend(row.result)
        if self.layout is not None:
            expected = self.layout.items
        else:
            info = self.queue.store.group_info(str(self.id)) if self.id else None
            expected = info.size if info is not None else len(self.job_ids)
        if len(results) != expected:
            raise StoreError(f"group {self.id}: {expected - len(results)} results are missing (purged?)")
        return results
