"""The benchmark's workload, importable as ``bench_tasks`` (scripts/ on sys.path) by jobq,
Huey and RQ workers alike: one no-op job, ``add(x) -> x + 1``."""

from __future__ import annotations


def add(x: int) -> int:
    return x + 1
