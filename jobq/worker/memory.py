"""A job's memory cap (``memory_mb``), set by its worker around the call.

The cap is ``RLIMIT_DATA``: since Linux 4.7 it bounds the process's private writable memory
(heap, anonymous ``mmap``, thread stacks), which is what a Python job allocates, and it is
not fooled by large *reserved* address ranges the way ``RLIMIT_AS`` is (numpy, JIT runtimes
and allocators such as jemalloc map far more address space than they use, so an address-space
cap breaks them long before they use the memory). Files mapped read-only and shared memory are
not counted. A cgroup v2 ``memory.max`` would count the resident pages exactly (page cache
included), but needs a delegated cgroup per worker, which a supervisor cannot count on
having; the kernel's OOM killer is still reported as such when it strikes (see
:mod:`jobq.runtime.oom`).

``memory_mb`` is what the job may allocate on top of what its worker already holds when the
job starts (the interpreter and the modules it imported). An allocation past it fails, and
Python raises ``MemoryError`` in the job: the job fails with ``JobOutOfMemory`` naming the cap
and the peak resident memory the worker reached while the job ran; the worker goes on."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.models import JobError


def _status_kb(name: str) -> int | None:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(name.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> None:
    """Start the resident peak (VmHWM) afresh, so it is the job's (Linux ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


@contextmanager
def memory_cap(memory_mb: int | None) -> Iterator[None]:
    """Run the block with at most ``memory_mb`` MB of private memory on top of the worker's own."""
    if not memory_mb:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    used_kb = _status_kb("VmData") or 0
    cap = used_kb * 1024 + memory_mb * 2**20
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    _reset_peak()
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def out_of_memory(memory_mb: int, original: JobError) -> JobError:
    """The ``JobOutOfMemory`` error of a job that hit its cap (``original``: its MemoryError)."""
    peak = _status_kb("VmHWM")
    where = f"; peak resident memory of its worker {peak / 1024:.0f} MB" if peak else ""
    return JobError(
        "JobOutOfMemory",
        f"job exceeded its memory limit of {memory_mb} MB (memory_mb, RLIMIT_DATA){where}",
        original.traceback,
    )
