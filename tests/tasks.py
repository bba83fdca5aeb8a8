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


def count_call(path):
    """Record one more call in ``path``; how many calls there have been, this one included."""
    record(path, "call")
    with open(path) as fh:
        return sum(1 for _ in fh)


def record_then_sleep(path, token, seconds):
    record(path, token)
    time.sleep(seconds)
    return token


def flaky(path, failures):
    """Fail the first ``failures`` calls (counted in ``path``), then succeed."""
    calls = count_call(path)
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


_LEAKED: list[bytearray] = []


def leak(mb=50):
    """Allocate ``mb`` MB and keep it for the life of the worker process; return the pid."""
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):  # touch every page so it is resident
        block[i] = 1
    _LEAKED.append(block)
    return os.getpid()


def record_pid_then_sleep(path, token, seconds):
    """Append ``token pid`` to ``path``, then sleep: the test learns which worker runs it."""
    record(path, f"{token} {os.getpid()}")
    time.sleep(seconds)
    return token


def crash_first(path, crashes):
    """SIGKILL this worker on the first ``crashes`` calls (counted in ``path``), then succeed."""
    calls = count_call(path)
    if calls <= crashes:
        os.kill(os.getpid(), signal.SIGKILL)
    return calls


def hang_first(path, hangs, seconds=60):
    """Sleep ``seconds`` on the first ``hangs`` calls (counted in ``path``), then return at once."""
    calls = count_call(path)
    if calls <= hangs:
        time.sleep(seconds)
    return calls


# -- workflows (tests/test_workflows*.py) ------------------------------------------------
def square(x):
    return x * x


def total(values):
    """A reducer: the sum of the list of results it is given."""
    return sum(values)


def span(path, token, seconds):
    """Sleep ``seconds``, then append ``token start end`` (wall-clock times) to ``path``."""
    start = time.time()
    time.sleep(seconds)
    record(path, f"{token} {start!r} {time.time()!r}")
    return token


# -- PostgreSQL (tests/test_postgres.py) -----------------------------------------------------
def attempt_number(path, first_seconds):
    """Record ``start N`` for attempt N, sleep ``first_seconds`` on attempt 1 only, and return
    N: the stored result tells which attempt produced it."""
    attempt = jobq.current_job().attempt
    record(path, f"start {attempt}")
    if attempt == 1:
        time.sleep(first_seconds)
    return attempt


def print_nul():
    """Print a NUL byte amid text (binary junk on stdout), then succeed."""
    sys.stdout.write("before\x00after\n")
    return "printed"


# -- Process, Pool, Executor, chunked maps, asyncio (issue 11) --------------------------------
def square_or_die(x, victim=3):
    """x * x, but the worker running item ``victim`` SIGKILLs itself."""
    if x == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def fail_at(x, bad=13):
    """x * 10, raising ValueError for item ``bad``."""
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x * 10


def slow_square(x, seconds=0.1):
    time.sleep(seconds)
    return x * x


def cube(x):
    """Decorated with ``q.task`` by tests/test_asyncio.py (and nowhere else)."""
    return x * x * x


async def async_square(x, seconds=0.01):
    import asyncio

    await asyncio.sleep(seconds)
    return x * x


async def async_loop_id():
    """(pid, id of the running loop): a worker keeps one loop for its life."""
    import asyncio

    await asyncio.sleep(0)
    return [os.getpid(), id(asyncio.get_running_loop())]


async def async_print(n):
    import asyncio

    print(f"async Worker: {n}")
    await asyncio.sleep(0)
    return n


async def async_sleep(seconds):
    import asyncio

    await asyncio.sleep(seconds)
    return seconds


async def async_spin(seconds):
    """A coroutine that never awaits: only its timeout (the supervisor's kill) ends it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


async def async_kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


async def async_fail(message="async boom"):
    raise ValueError(message)


async def async_fail_at(x, bad=13):
    """As fail_at, as a coroutine."""
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x * 10


def record_then_hang_first(path, token, seconds=60):
    """Append ``token attempt`` to ``path``; on attempt 1 only, then sleep ``seconds`` (a job
    in flight when its supervisor is killed; its next attempt returns at once)."""
    attempt = jobq.current_job().attempt
    record(path, f"{token} {attempt}")
    if attempt == 1:
        time.sleep(seconds)
    return token
