"""asyncio callers: ``await q.asubmit(...)``, ``await job.ajoin()``, ``await group.ajoin()``,
``await q.amap(...)``. None of them blocks the event loop.

Store calls never run on the loop: submits run in the loop's default thread pool, and all
the ``ajoin``s of one queue on one loop (jobs' and groups') share one waiter task, which
looks up every awaited job in one read per round, and each awaited group's counts, on a
thread of its own, and resolves their futures. Between
rounds it backs off from 1 ms to 50 ms; a new ``ajoin`` wakes it at once. On PostgreSQL the
waiter's thread waits with LISTEN/NOTIFY (``Store.wait_for_change``), so a finish wakes it
at once; on SQLite it sleeps on the loop (``asyncio``), woken early by a new ``ajoin``.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.errors import JobNotFound, JobqError
from ..core.models import SUCCEEDED
from ..store import Store
from .failures import job_failed
from .polling import Backoff
from .protocols import GroupLike, JobLike, QueueLike
from .waiting import outcomes


async def asubmit(
    queue: QueueLike, target: str | Callable[..., Any], args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any
) -> Any:
    """``queue.submit`` run on the loop's default thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(queue.submit, target, args, kwargs, **options))


async def amap(queue: QueueLike, target: str | Callable[..., Any], iterable: Iterable[Any], **options: Any) -> Any:
    """``queue.map`` run on the loop's default thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(queue.map, target, iterable, **options))


class _Waiter:
    """Waits for the jobs and groups awaited on one loop, for one queue: one read of every
    awaited job's state per round, on a thread of its own."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.pending: dict[Hashable, list[asyncio.Future[Any]]] = {}
        self.groups: dict[Hashable, GroupLike] = {}
        self.kick = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="jobq-ajoin")
        self.notifies = type(store).wait_for_change is not Store.wait_for_change

    async def wait(self, key: Hashable, timeout: float | None, group: GroupLike | None = None) -> Any:
        """The value of job ``key`` (or of ``group``'s join), once there is one."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending.setdefault(key, []).append(fut)
        if group is not None:
            self.groups[key] = group
        self.kick.set()
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run(), name="jobq-ajoin-waiter")
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            what = f"group {group.id}" if group is not None else f"job {key}"
            raise TimeoutError(f"{what} unfinished after {timeout:g}s") from None
        finally:
            waiting = self.pending.get(key)
            if waiting is not None and fut in waiting:
                waiting.remove(fut)
                if not waiting:
                    del self.pending[key]
                    self.groups.pop(key, None)

    def _poll(self, keys: list[Hashable], groups: dict[Hashable, GroupLike]) -> dict[Hashable, tuple[bool, Any]]:
        """(thread) (ok, value or exception) of each awaited job or group that is done."""
        out: dict[Hashable, tuple[bool, Any]] = {}
        ids = [k for k in keys if isinstance(k, int)]
        for job_id, outcome in (outcomes(self.store, ids) if ids else {}).items():
            if outcome is None:
                out[job_id] = (False, JobNotFound(job_id))
            elif outcome.state == SUCCEEDED:
                out[job_id] = (True, outcome.result)
            else:
                out[job_id] = (False, job_failed(job_id, outcome.state, outcome.error))
        for key, group in groups.items():
            try:
                if group.finished():
                    out[key] = (True, group.results())
            except JobqError as exc:  # an item's JobFailed, GroupLikeIncomplete
                out[key] = (False, exc)
        return out

    async def _run(self) -> None:
        pace = Backoff()
        while self.pending:
            self.kick.clear()
            groups = {k: g for k, g in self.groups.items() if k in self.pending}
            found = await self.loop.run_in_executor(self.thread, self._poll, list(self.pending), groups)
            for key, (ok, value) in found.items():
                self.groups.pop(key, None)
                for fut in self.pending.pop(key, ()):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
            if found:
                pace.progress()
            delay = pace.next()
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


def _waiter(queue: QueueLike) -> _Waiter:
    loop = asyncio.get_running_loop()
    by_store = _waiters.setdefault(loop, {})
    waiter = by_store.get(id(queue.store))
    if waiter is None or waiter.store is not queue.store:
        waiter = by_store[id(queue.store)] = _Waiter(queue.store, loop)
    return waiter


async def ajoin_job(job: JobLike, timeout: float | None = None) -> Any:
    """Wait for ``job`` without blocking the loop: its value, or :class:`JobFailed`,
    :class:`TimeoutError` when ``timeout`` passes first."""
    return await _waiter(job.queue).wait(job.id, timeout)


async def ajoin_group(group: GroupLike, timeout: float | None = None) -> list[Any]:
    """Wait for every item of ``group`` without blocking the loop: results in input order,
    or :class:`JobFailed` naming the failed item's index."""
    return await _waiter(group.queue).wait(("group", id(group)), timeout, group)


__all__ = ["ajoin_group", "ajoin_job", "amap", "asubmit"]
