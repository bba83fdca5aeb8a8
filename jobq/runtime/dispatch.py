"""Dispatch: how many jobs a supervisor claims, and which worker gets them.

Short jobs go in batches of about ``PREFETCH_SECONDS`` of work, and a worker gets its next
batch while it runs the current one; a long job goes alone to an idle worker, so none
hoards work another could run."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.models import Outcome, OutcomeKind
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
        #: worker slot -> the id of the job needing several cpus that holds it (idle meanwhile)
        self.lent: dict[int, int] = {}
        #: jobs claimed that this supervisor cannot start now: the supervisor releases them
        self.give_back: list[Outcome] = []
        #: no claims before this wall time (a crash loop's back-off)
        self.paused_until = 0.0

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
        if wall_now < self.paused_until:
            return 0
        self._free_lent_workers()
        batch = self.batch_size()
        ready = [
            w
            for w in self.pool.workers
            if w.slot not in self.lent
            and not w.retiring
            and w.kill is None
            and not w.outbox  # a worker whose pipe is full gets nothing more
            and (not w.tasks or (batch > 1 and len(w.tasks) <= batch))
            and w.process.is_alive()
        ]
        if not ready:
            return 0
        idle = [w for w in ready if not w.tasks]
        # Slots are counted, not workers: a job needing N cpus takes N idle workers.
        slots = max(1, len(idle))
        claimed = self.store.claim(
            self.owner, self.queues, batch * len(ready), wall_now, wall_now + self.lease_seconds, slots=slots
        )
        if not claimed:
            return 0
        singles = []
        for job in claimed:
            if job.cpus <= 1:
                singles.append(job)
            elif len(idle) >= job.cpus:
                w, *lent = idle[: job.cpus]
                idle = idle[job.cpus :]
                ready = [r for r in ready if r is not w and r not in lent]
                for other in lent:
                    self.lent[other.slot] = job.id
                w.hand([job])
            else:  # claimed beside another big job in the same batch: back to the queue
                self.give_back.append(Outcome(job.id, job.attempts, OutcomeKind.RELEASED))
        if singles and not ready:
            self.give_back += [Outcome(j.id, j.attempts, OutcomeKind.RELEASED) for j in singles]
            return len(claimed)
        ready.sort(key=lambda w: len(w.tasks))
        per_worker = -(-len(singles) // len(ready)) if ready else 0
        for i, w in enumerate(ready):
            chunk = singles[i * per_worker : (i + 1) * per_worker]
            if not chunk:
                break
            w.hand(chunk)
        return len(claimed)

    def _free_lent_workers(self) -> None:
        """Workers lent to a job needing several slots come back once it has left its worker."""
        if self.lent:
            held = {job_id for w in self.pool.workers for job_id in w.tasks}
            self.lent = {slot: job_id for slot, job_id in self.lent.items() if job_id in held}
