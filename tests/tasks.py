"""Job functions the tests submit. Importable as ``tests.tasks`` from the repository root."""

from __future__ import annotations

import os
import signal
import sys
import time

import jobq


def add(x, y=1):
    return x + y


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def fail(message="boom"):
    raise ValueError(message)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def kill_self(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)


def exit_hard(code=3):
    os._exit(code)


def unserialisable():
    return object()


def shout(n):
    print(f"Worker: {n}")
    print(f"to stderr {n}", file=sys.stderr)
    return n


def record(path, token):
    """Append ``token`` to ``path`` (one line per execution), for exactly-once checks."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    return token


def record_then_sleep(path, token, seconds):
    record(path, token)
    time.sleep(seconds)
    return token


def flaky(path, failures):
    """Fail the first ``failures`` calls (counted in ``path``), then succeed."""
    record(path, "call")
    with open(path) as fh:
        calls = sum(1 for _ in fh)
    if calls <= failures:
        raise RuntimeError(f"flaky failure {calls}")
    return calls


def pid():
    return os.getpid()


def progress(path, seconds):
    job = jobq.current_job()
    job.set_progress(0.5, "half way")
    record(path, "half")
    time.sleep(seconds)
    return job.id
