"""Why an unstarted job waits (``jobq status ID``): its time, its dependencies, a paused
queue, a cap, a rate, its partition's cap, or cpu slots no live supervisor has."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..core.models import JobRecord, State, iso

if TYPE_CHECKING:
    from .queue import Queue


def why_waiting(q: Queue, record: JobRecord) -> list[str]:
    """The reasons ``record`` has not started (empty when it is due and nothing holds it)."""
    reasons: list[str] = []
    if record.state == State.WAITING:
        reasons.append(f"waits for its dependencies {', '.join(map(str, record.depends_on))}")
    if record.state not in (State.QUEUED, State.SCHEDULED, State.WAITING):
        return reasons
    if record.run_at > time.time():
        reasons.append(f"not before {iso(record.run_at)}")
    control = next((c for c in q.store.queue_controls() if c.name == record.queue), None)
    if control is not None and control.paused:
        reasons.append(f"queue {record.queue} is paused")
    serving = [s for s in q.live_supervisors() if not s.queues or record.queue in s.queues]
    if not serving:
        reasons.append(f"no live supervisor serves queue {record.queue}")
    elif record.cpus > max(s.concurrency for s in serving):
        largest = max(s.concurrency for s in serving)
        reasons.append(f"needs {record.cpus} cpu slots; the largest live supervisor serving queue {record.queue} has {largest}")
    if control is None:
        return reasons
    running = q.store.counts().get(record.queue, {}).get(State.RUNNING.value, 0)
    if control.concurrency is not None and running >= control.concurrency:
        reasons.append(f"queue {record.queue} is at its cap of {control.concurrency} running jobs")
    if control.rate:
        reasons.append(f"queue {record.queue} starts at most {control.rate}")
    if record.partition is not None and control.partition_concurrency is not None:
        counts = {k: r for k, _, r in q.store.partition_counts(record.queue, 10**9)}
        if counts.get(record.partition, 0) >= control.partition_concurrency:
            reasons.append(
                f"partition {record.partition} is at the cap of {control.partition_concurrency} running jobs per partition"
            )
    return reasons
