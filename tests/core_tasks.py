"""Job targets for the core tests (state machine, supervisor loop, races)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import jobq


def noop(x: int = 0) -> int:
    return x


def touch_then_wait_for(started: str, release: str, timeout_seconds: float = 30) -> str:
    """Create ``started``, then wait until ``release`` exists (or give up)."""
    Path(started).touch()
    deadline = time.monotonic() + timeout_seconds
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released" if os.path.exists(release) else "gave up"


def size_of(payload: str) -> int:
    return len(payload)


def progress_then_wait(started: str, release: str) -> str:
    job = jobq.current_job()
    assert job is not None
    job.set_progress(0.25)
    job.set_progress(0.5, "half way")
    return touch_then_wait_for(started, release)


def ignore_term_then_sleep(seconds: float) -> str:
    # The supervisor ends a worker with SIGUSR1 (workers ignore SIGTERM, which may be meant for
    # the whole process group): a job that ignores both leaves only the SIGKILL escalation.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    time.sleep(seconds)
    return "slept"


def print_then_wait(more: str, release: str) -> str:
    """Print a line, wait for ``more``, print another, wait for ``release``, print the last."""
    print("first line")
    deadline = time.monotonic() + 30
    while not os.path.exists(more) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("second line")
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("last line")
    return "done"
