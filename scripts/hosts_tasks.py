"""Job functions for ``scripts/hosts.py``; workers on each namespace-host import this module
as ``hosts_tasks``.

:func:`record` appends one line per execution to ``/tmp/jobq-hosts-runs.log`` -- the
``/tmp`` of the host that ran it (each host has its own, which hosts.py reads from outside)::

    <job id> <attempt> <host name> <unix time> <worker pid>

with a single ``write`` on an ``O_APPEND`` descriptor, so the run can count executions per
job and tell which host ran each of them, and when.
"""

from __future__ import annotations

import os
import socket
import time

import jobq

RUNS_FILE = "jobq-hosts-runs.log"


def record(seconds: float = 0.0) -> str:
    """Work ``seconds`` (a sleep), then log this execution; returns the host's name."""
    if seconds > 0:
        time.sleep(seconds)
    job = jobq.current_job()
    job_id = job.id if job is not None else 0
    attempt = job.attempt if job is not None else 0
    host = socket.gethostname()
    line = f"{job_id} {attempt} {host} {time.time():.6f} {os.getpid()}\n"
    fd = os.open(os.path.join("/tmp", RUNS_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return host


def noop() -> None:
    """Nothing: the throughput figures measure jobq's own cost per job."""
