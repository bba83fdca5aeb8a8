"""``jobq.Executor``: a ``concurrent.futures.Executor`` whose calls are durable jobs.

``submit`` returns a real ``concurrent.futures.Future`` (so ``as_completed``, ``wait`` and
``asyncio.wrap_future`` work), completed by a watcher thread when its job finishes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..client.polling import wait_until
from ..client.queue import Group, Job, Queue
from ..client.waiting import Outcome, ResultIterator, Watcher, failure
from ..core.models import FINISHED_STATES, QUEUED, SCHEDULED, SUCCEEDED, WAITING
from .embedded import EmbeddedSupervisor
from .pool import check_options

log = logging.getLogger("jobq.executor")


class JobFuture(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` bound to a job (``job``); ``cancel()`` cancels the job
    when it has not started, and returns False once it runs (as the standard executors do)."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job

    def cancel(self) -> bool:
        with self._condition:
            if self._state != "PENDING":
                return self._state in ("CANCELLED", "CANCELLED_AND_NOTIFIED")
        if self.job.queue.cancel(self.job.id).get(self.job.id) != "cancelled":
            return False
        return super().cancel()

    def _done(self, outcome: Outcome | None) -> None:
        if not self.set_running_or_notify_cancel():
            return
        if outcome is not None and outcome.state == SUCCEEDED:
            self.set_result(outcome.result)
        else:
            self.set_exception(failure(self.job.id, outcome))


class Executor(concurrent.futures.Executor):
    """``concurrent.futures.Executor`` running calls as jobs in a jobq database, on a
    supervisor of ``max_workers`` workers embedded for the executor's life (until
    :meth:`shutdown`). ``db`` defaults to the database the CLI would use; ``options`` are
    :meth:`Queue.submit`'s (``timeout``, ``retries``, ...). A failed call's future raises
    :class:`jobq.JobFailed`."""

    def __init__(
        self, max_workers: int | None = None, *, db: str | os.PathLike[str] | None = None, queue: str = "default", **options: Any
    ) -> None:
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ValueError("max_workers must be greater than 0")
        check_options(options, "jobq.Executor")
        self._max_workers = max_workers
        self._queue_name = queue
        self._options = options
        self.queue = Queue(os.fspath(db) if db is not None else None)
        self._lock = threading.Lock()
        self._shutdown = False
        self._futures: set[JobFuture] = set()
        self._groups: list[Group] = []
        self.group_id: str | None = None  # the latest map's group
        self._watcher = Watcher(self.queue)
        self._supervisor: EmbeddedSupervisor | None = EmbeddedSupervisor(self.queue, max_workers, [queue])

    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> JobFuture:
        """Submit ``fn(*args, **kwargs)`` as a job; its future (``future.job`` is the job)."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        job = self.queue.submit(fn, args, kwargs, queue=self._queue_name, **self._options)
        future = JobFuture(job)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        self._watcher.watch_job(job.id, future._done)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def map(
        self, fn: Callable[..., Any] | str, *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[Any]:
        """``fn(*args)`` for the zipped ``iterables``, submitted now as one group (``chunksize``
        items a job); an iterator of the results in input order. Raises ``TimeoutError`` when
        a result is not ready ``timeout`` seconds after this call."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        group = self.queue.map(
            fn, list(zip(*iterables, strict=False)), chunksize=chunksize, queue=self._queue_name, **self._options
        )
        with self._lock:
            self._groups.append(group)
            self.group_id = group.id
        log.info("jobq.Executor: map submitted as group %s", group.id)
        return _until_failure(ResultIterator(group, ordered=True, deadline=deadline))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions; with ``cancel_futures`` cancel every call not started; with
        ``wait`` wait for the rest, then stop the supervisor (else that happens in the
        background once they finish)."""
        with self._lock:
            self._shutdown = True
            futures = list(self._futures)
            groups = list(self._groups)
        if cancel_futures:
            for future in futures:
                future.cancel()
            ids = [i for g in groups for i in g.job_ids]
            states = self.queue.store.get_states(ids)
            queued = [i for i in ids if states.get(i) in (QUEUED, SCHEDULED, WAITING)]
            if queued:
                self.queue.cancel(*queued)
        if wait:
            self._finish(futures, groups)
        else:
            threading.Thread(target=self._finish, args=(futures, groups), name="jobq-executor-shutdown", daemon=True).start()

    def _finish(self, futures: list[JobFuture], groups: list[Group]) -> None:
        concurrent.futures.wait(futures)
        ids = [i for g in groups for i in g.job_ids]
        wait_until(lambda: all(s in FINISHED_STATES for s in self.queue.store.get_states(ids).values()))
        sup, self._supervisor = self._supervisor, None
        if sup is not None:
            sup.stop()
        self._watcher.close()

    @property
    def supervisor_pid(self) -> int | None:
        """The pid of the executor's embedded supervisor (None once shut down)."""
        return self._supervisor.pid if self._supervisor is not None else None


def _until_failure(results: ResultIterator) -> Iterator[Any]:
    """The results, ending at the first failure (raised), as ``Executor.map``'s iterator does."""
    yield from results
