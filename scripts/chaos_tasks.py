"""Job functions for ``scripts/chaos.py``; workers import this module as ``chaos_tasks``.

Each execution appends one line to the log file with a single ``write`` on an ``O_APPEND``
descriptor (atomic for short lines on a local file system)::

    <token> <job id> <attempt> <worker pid> <supervisor pid>

so the soak can count executions per job and tell which process ran each of them.
"""

from __future__ import annotations

import os
import time

import jobq


def record(path: str, token: str, seconds: float = 0.0) -> str:
    """Log this execution of the job, then sleep ``seconds`` (to pace the soak)."""
    job = jobq.current_job()
    job_id = job.id if job is not None else 0
    attempt = job.attempt if job is not None else 0
    line = f"{token} {job_id} {attempt} {os.getpid()} {os.getppid()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    if seconds > 0:
        time.sleep(seconds)
    return token
