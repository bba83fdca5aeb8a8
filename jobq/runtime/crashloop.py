"""Crash-loop protection: a supervisor whose workers die for :data:`CRASH_LOOP_JOBS` jobs in
a row (a broken deploy, a native library that segfaults on import, memory exhausted) stops
claiming for a while, doubling the pause while the deaths go on, instead of burning through
the queue's jobs and their retries. Any job that ends with its worker alive resets it."""

from __future__ import annotations

import logging

log = logging.getLogger("jobq.supervisor")

CRASH_LOOP_JOBS = 10
FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 60.0


class CrashLoop:
    """Counts worker deaths in a row; says how long to stop claiming."""

    def __init__(self, supervisor_id: str) -> None:
        self.supervisor_id = supervisor_id
        self.deaths_in_row = 0
        self.pause_seconds = FIRST_PAUSE_SECONDS

    def job_ended(self) -> None:
        """A job ended with its worker alive."""
        if self.deaths_in_row >= CRASH_LOOP_JOBS:
            log.info("supervisor %s: a job ended normally again; the crash loop is over", self.supervisor_id)
        self.deaths_in_row = 0
        self.pause_seconds = FIRST_PAUSE_SECONDS

    def worker_died(self, job_id: int, cause: str) -> float:
        """A worker died running ``job_id``; returns the seconds to stop claiming (0: none)."""
        self.deaths_in_row += 1
        if self.deaths_in_row < CRASH_LOOP_JOBS:
            return 0.0
        pause = self.pause_seconds
        self.pause_seconds = min(self.pause_seconds * 2, MAX_PAUSE_SECONDS)
        log.warning(
            "supervisor %s: workers died for %d jobs in a row (last: job %d, %s); crash loop: no claims for %gs",
            self.supervisor_id,
            self.deaths_in_row,
            job_id,
            cause,
            pause,
            extra={"event": "supervisor_crash_loop", "job_id": job_id},
        )
        return pause
