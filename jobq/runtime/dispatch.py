"""Dispatch: how many jobs a supervisor claims, and which worker gets them.

Short jobs go in batches of about ``PREFETCH_SECONDS`` of work, and a worker gets its next
batch while it runs the current one; a long job goes alone to an idle worker, so none
hoards work another could run."""

from __future__ import annotations

from collections.abc import Sequence

from ..store import Store
from .workerpool import WorkerPool

# How far ahead of a worker's pace to claim: about this many seconds of work per batch.
PREFETCH_SECONDS = 0.004
MAX_BATCH = 256


class Dispatcher:
    """Claims jobs for workers with room and queues them to their pipes."""

    def __init__(self, store: Store, pool: WorkerPool, owner: str, queues: Sequence[str] | None, lease_seconds: float) -> None:
        self.store = store
        self.pool = pool
        self.owner = owner
        self.queues = list(queues) if queues else None
        self.lease_seconds = lease_seconds
        self.avg_job_seconds = 0.0
        self.jobs_done = 0

    def record_duration(self, seconds: float) -> None:
        """A job ran for ``seconds``: the batch size follows the average."""
        self.jobs_done += 1
        if self.jobs_done == 1 or seconds > self.avg_job_seconds:
            # Up at once, down slowly: after a run of tiny jobs, the first long one stops
            # the prefetch, so no supervisor hoards long jobs another could run.
            self.avg_job_seconds = seconds
        else:
            self.avg_job_seconds = 0.9 * self.avg_job_seconds + 0.1 * seconds

    def batch_size(self) -> int:
        if self.avg_job_seconds <= 0:
            return 1
        return max(1, min(MAX_BATCH, int(PREFETCH_SECONDS / self.avg_job_seconds)))

    def dispatch(self, wall_now: float) -> int:
        """Claim and hand out jobs; returns how many were claimed."""
        batch = self.batch_size()
        ready = [
            w
            for w in self.pool.workers
            if not w.retiring
            and w.kill is None
            and not w.outbox  # a worker whose pipe is full gets nothing more
            and (not w.tasks or (batch > 1 and len(w.tasks) <= batch))
            and w.process.is_alive()
        ]
        if not ready:
            return 0
        claimed = self.store.claim(self.owner, self.queues, batch * len(ready), wall_now, wall_now + self.lease_seconds)
        if not claimed:
            return 0
        ready.sort(key=lambda w: len(w.tasks))
        per_worker = -(-len(claimed) // len(ready))
        for i, w in enumerate(ready):
            chunk = claimed[i * per_worker : (i + 1) * per_worker]
            if not chunk:
                break
            w.hand(chunk)
        return len(claimed)
