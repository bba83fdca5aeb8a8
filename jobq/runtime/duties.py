"""A supervisor's periodic duties: its heartbeat (which renews its jobs' leases and brings
cancel requests), the sweep for dead supervisors and expired leases, due schedules and
the purge of finished jobs past their ``result_ttl``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..core.config import Settings
from ..core.local import LocalPresence, lock_state, supervisor_dead
from ..store import Store, SupervisorInfo
from .schedules import next_run_after

log = logging.getLogger("jobq.supervisor")

PURGE_EVERY_SECONDS = 60.0


class Duties:
    """Runs the periodic duties when they are due (``run(now)``, monotonic ``now``)."""

    def __init__(self, store: Store, settings: Settings, info: SupervisorInfo, presence: LocalPresence | None) -> None:
        self.store = store
        self.settings = settings
        self.info = info
        self.presence = presence
        self.next_at = 0.0  # monotonic
        self.next_purge_at = 0.0  # monotonic

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def run(self, now: float, stopping: bool, on_cancel: Callable[[set[int]], None]) -> None:
        """Heartbeat, sweep, schedules and purge; ``on_cancel`` gets the ids of our running
        jobs whose cancellation was requested."""
        self.next_at = now + self.settings.heartbeat_seconds
        wall = time.time()
        cancel_ids = set(self.store.heartbeat(self.info.id, wall, wall + self.settings.lease_seconds))
        if cancel_ids:
            on_cancel(cancel_ids)
        self.sweep(wall)
        self.store.requeue_lost(wall, expired_before=wall, reason="lease expired: its supervisor stopped renewing it")
        self.store.prune_supervisors(wall - 2 * self.settings.lease_seconds)
        if not stopping:
            for job_id in self.store.enqueue_due_schedules(wall, next_run_after):
                log.info("job %d enqueued by its schedule", job_id)
        if now >= self.next_purge_at:
            self.next_purge_at = now + PURGE_EVERY_SECONDS
            purged = self.store.purge(wall, ["succeeded", "failed", "cancelled"], None, self.settings.result_ttl)
            if purged:
                log.info("purged %d finished jobs past their result_ttl", purged)

    def sweep(self, wall: float) -> None:
        """Take back the jobs of supervisors that are certainly dead."""
        supervisors = self.store.supervisors()
        if not any(s.id == self.info.id for s in supervisors):
            # Pruned while we were frozen (SIGSTOP, a paused VM): be listed again.
            self.info.heartbeat_at = wall
            self.store.register_supervisor(self.info)
        for sup in supervisors:
            if sup.id == self.info.id or sup.presence != self.info.presence:
                continue  # elsewhere: its jobs come back when their leases expire
            if supervisor_dead(sup, self.info.presence, wall, self.settings.lease_seconds):
                taken = self.store.requeue_lost(wall, owner=sup.id, reason=f"supervisor {sup.id} (pid {sup.pid}) died")
                self.store.unregister_supervisor(sup.id)
                lock_state(sup.lock_path, remove_free=True)
                log.warning(
                    "supervisor %s (pid %d on %s) is dead; took back %d jobs%s",
                    sup.id,
                    sup.pid,
                    sup.host,
                    len(taken),
                    f": {', '.join(map(str, taken))}" if taken else "",
                )
        if self.presence is not None:
            # Leftovers of supervisors that died before registering, or whose row is gone.
            self.presence.remove_dead_leftovers(keep={s.id for s in supervisors})
