"""The benchmark's workload, importable as ``bench_tasks`` (scripts/ on sys.path) by jobq,
Huey and RQ workers alike: one no-op job, ``add(x) -> x + 1``."""

from __future__ import annotations


def add(x: int) -> int:
    return x + 1


def noop(i: int) -> int:
    return i


def steps_job(n: int) -> float:
    """``n`` no-op durable steps (issue 16's benchmark); the seconds they took."""
    import time

    import jobq

    t0 = time.perf_counter()
    for i in range(n):
        jobq.step.run("noop", noop, i)
    return time.perf_counter() - t0


def plain_job(n: int) -> float:
    """The same job without steps; the seconds it took."""
    import time

    t0 = time.perf_counter()
    for i in range(n):
        noop(i)
    return time.perf_counter() - t0
