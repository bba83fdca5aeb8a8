"""asyncio callers: ``await q.asubmit(...)``, ``await job.ajoin()``, ``await group.ajoin()``,
``await q.amap(...)``. None of them blocks the event loop.

Store calls never run on the loop: submits run in the loop's default thread pool, and all
the ``ajoin``s of one queue on one loop share one waiter task, which looks up every awaited
job in one read per round on a thread of its own and resolves their futures. Between
rounds it backs off from 1 ms to 50 ms; a new ``ajoin`` wakes it at once. On PostgreSQL the
waiter's thread waits with LISTEN/NOTIFY (``Store.wait_for_change``), so a finish wakes it
at once; on SQLite it sleeps on the loop (``asyncio``), woken early by a new ``ajoin``.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .errors import JobFailed, JobNotFound
from .models import SUCCEEDED, JobError
from .store import JobResult, Store
from .watch import outcomes

if TYPE_CHECKING:
    from .api import Group, Job, Queue

_FIRST_DELAY, _MAX_DELAY = 0.001, 0.05


async def asubmit(
    queue: Queue, target: str | Callable[..., Any], args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any
) -> Job:
    """``queue.submit`` run on the loop's default thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(queue.submit, target, args, kwargs, **options))


async def amap(queue: Queue, target: str | Callable[..., Any], iterable: Iterable[Any], **options: Any) -> Group:
    """``queue.map`` run on the loop's default thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(queue.map, target, iterable, **options))


def _failure(job_id: int, state: str, error: JobError | None) -> JobFailed:
    error = error or JobError("Error")
    return JobFailed(job_id, error.type, error.message, error.traceback, state=str(state))


class _Waiter:
    """Waits for the jobs awaited on one loop, for one queue, in one read per round."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.pending: dict[int, list[asyncio.Future[Any]]] = {}
        self.kick = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="jobq-ajoin")
        self.notifies = type(store).wait_for_change is not Store.wait_for_change

    async def wait(self, job_id: int, timeout: float | None) -> Any:
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending.setdefault(job_id, []).append(fut)
        self.kick.set()
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run(), name="jobq-ajoin-waiter")
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise TimeoutError(f"job {job_id} unfinished after {timeout:g}s") from None
        finally:
            waiting = self.pending.get(job_id)
            if waiting is not None and fut in waiting:
                waiting.remove(fut)
                if not waiting:
                    del self.pending[job_id]

    def _poll(self, ids: list[int]) -> dict[int, JobResult | None]:
        """(thread) The outcome of each finished or vanished job among ``ids``."""
        return outcomes(self.store, ids)

    async def _run(self) -> None:
        delay = _FIRST_DELAY
        while self.pending:
            self.kick.clear()
            found = await self.loop.run_in_executor(self.thread, self._poll, list(self.pending))
            for job_id, outcome in found.items():
                for fut in self.pending.pop(job_id, ()):
                    if fut.done():
                        continue
                    if outcome is None:
                        fut.set_exception(JobNotFound(job_id))
                    elif outcome.state == SUCCEEDED:
                        fut.set_result(outcome.result)
                    else:
                        fut.set_exception(_failure(job_id, outcome.state, outcome.error))
            delay = _FIRST_DELAY if found else min(delay * 1.5, _MAX_DELAY)
            if not self.pending:
                break
            if self.notifies:
                await self.loop.run_in_executor(self.thread, self.store.wait_for_change, delay)
            elif not self.kick.is_set():
                try:
                    async with asyncio.timeout(delay):
                        await self.kick.wait()
                except TimeoutError:
                    pass


_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Waiter]] = weakref.WeakKeyDictionary()


def _waiter(queue: Queue) -> _Waiter:
    loop = asyncio.get_running_loop()
    by_store = _waiters.setdefault(loop, {})
    waiter = by_store.get(id(queue.store))
    if waiter is None or waiter.store is not queue.store:
        waiter = by_store[id(queue.store)] = _Waiter(queue.store, loop)
    return waiter


async def ajoin_job(job: Job, timeout: float | None = None) -> Any:
    """Wait for ``job`` without blocking the loop: its value, or :class:`JobFailed`,
    :class:`TimeoutError` when ``timeout`` passes first."""
    return await _waiter(job.queue).wait(job.id, timeout)


async def ajoin_group(group: Group, timeout: float | None = None) -> list[Any]:
    """Wait for every item of ``group`` without blocking the loop: results in input order,
    or :class:`JobFailed` naming the failed item's index."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = _FIRST_DELAY
    while not await loop.run_in_executor(None, group.finished):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"group {group.id} unfinished after {timeout:g}s")
            delay = min(delay, left)
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    return await loop.run_in_executor(None, group.results)


__all__ = ["ajoin_group", "ajoin_job", "amap", "asubmit"]
