"""The event loop of a worker process: ``async def`` targets run on it, one job at a time.

Each worker creates its loop on its first coroutine and keeps it for its life, so clients
a job keeps in module globals (an HTTP session, a connection pool) can outlive the job.
Timeouts, cancels and crashes are handled from outside, by the supervisor ending the worker
process: a coroutine that never awaits is ended like any other job."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

_loop: asyncio.AbstractEventLoop | None = None


def worker_loop() -> asyncio.AbstractEventLoop:
    """This worker's event loop (created on first use)."""
    global _loop
    if _loop is None or _loop.is_closed():
        # Imported by a worker's first async job, not at every worker's and supervisor's
        # start (19 ms): this module is imported by every worker.
        import asyncio

        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a job's coroutine to its end on this worker's loop; its return value."""
    return worker_loop().run_until_complete(coro)
