"""``jobq.Pool``: the ``multiprocessing.Pool`` shape, every task a durable job.

The pool runs an embedded supervisor with ``processes`` workers for its life. ``map`` and
its kin submit one group per call (``chunksize`` items a job); ``apply_async`` one job. If
the program dies mid-map, the group stays in the database: ``jobq wait GROUP`` or
``q.group(GROUP).join()`` collects its results once a supervisor has run it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..client.options import SubmitOptions
from ..client.polling import wait_until
from ..client.queue import Group, Job, Queue
from ..client.waiting import Outcome, ResultIterator, Watcher, failure
from ..core.models import FINISHED_STATES, SUCCEEDED
from ..worker.chunks import check_chunksize
from .embedded import EmbeddedSupervisor

log = logging.getLogger("jobq.pool")

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"
# The largest chunk Pool.map picks by itself (a chunk's arguments and results are each one
# stored value, bounded by max_payload_bytes).
MAX_AUTO_CHUNKSIZE = 1000


def check_options(options: dict[str, Any], where: str) -> None:
    """Reject keywords that are not :meth:`Queue.submit` options (or are per-call ones)."""
    SubmitOptions.of(options, allowed=SubmitOptions.names() - SubmitOptions.PER_JOB - {"queue"}, where=where)


def auto_chunksize(n: int, workers: int) -> int:
    """``multiprocessing.Pool``'s default: about four chunks a worker (at most
    MAX_AUTO_CHUNKSIZE items each)."""
    chunksize, extra = divmod(n, workers * 4)
    return max(1, min(MAX_AUTO_CHUNKSIZE, chunksize + (1 if extra else 0)))


class AsyncResult:
    """The result of ``apply_async`` (or, as a :class:`MapResult`, of ``map_async``)."""

    def __init__(self, callback: Callable[[Any], None] | None, error_callback: Callable[[BaseException], None] | None) -> None:
        self._event = threading.Event()
        self._ok = False
        self._value: Any = None
        self._callback = callback
        self._error_callback = error_callback

    def _set(self, ok: bool, value: Any) -> None:
        self._ok, self._value = ok, value
        try:  # as multiprocessing does: the callback runs before get() returns
            if ok and self._callback is not None:
                self._callback(value)
            elif not ok and self._error_callback is not None:
                self._error_callback(value)
        finally:
            self._event.set()

    def ready(self) -> bool:
        """Whether the call has finished."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether it finished without an error (ValueError when not ready yet)."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._ok

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready or ``timeout`` passes."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises the failure (:class:`jobq.JobFailed`), or
        ``multiprocessing.TimeoutError`` when ``timeout`` passes first."""
        self.wait(timeout)
        if not self.ready():
            raise multiprocessing.TimeoutError
        if self._ok:
            return self._value
        raise self._value


class ApplyResult(AsyncResult):
    """The result of one job; ``job`` is the :class:`jobq.Job`."""

    def __init__(self, job: Job, callback: Any, error_callback: Any) -> None:
        super().__init__(callback, error_callback)
        self.job = job

    def _done(self, outcome: Outcome | None) -> None:
        if outcome is not None and outcome.state == SUCCEEDED:
            self._set(True, outcome.result)
        else:
            self._set(False, failure(self.job.id, outcome))


class MapResult(AsyncResult):
    """The result of ``map_async``/``starmap_async``; ``group`` is the :class:`jobq.Group`
    and ``group_id`` its id (``jobq wait GROUP_ID`` from a shell)."""

    def __init__(self, group: Group, callback: Any, error_callback: Any) -> None:
        super().__init__(callback, error_callback)
        self.group = group

    @property
    def group_id(self) -> str | None:
        return self.group.id

    def _done(self, error: Exception | None = None) -> None:
        if error is not None:
            self._set(False, error)
            return
        try:
            value = self.group.results()
        except Exception as exc:  # the failed item's JobFailed (or the store's error)
            self._set(False, exc)
        else:
            self._set(True, value)


class Pool:
    """``multiprocessing.Pool`` whose tasks are jobs in a jobq database.

    ``processes`` workers (default: the CPU count) run in a supervisor embedded for the
    pool's life, serving ``queue``. ``db`` defaults to the database the CLI would use;
    ``maxtasksperchild`` recycles workers; ``options`` (``timeout``, ``retries``, ``priority``,
    ...) apply to every task, as :meth:`Queue.submit` takes them. Results must be JSON values
    (tuples come back as lists). A failed task raises :class:`jobq.JobFailed` from ``get()``.
    """

    def __init__(
        self,
        processes: int | None = None,
        *,
        db: str | os.PathLike[str] | None = None,
        queue: str = "default",
        maxtasksperchild: int | None = None,
        **options: Any,
    ) -> None:
        if processes is None:
            processes = os.cpu_count() or 1
        if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        check_options(options, "jobq.Pool")
        self._processes = processes
        self._queue_name = queue
        self._options = options
        self.queue = Queue(os.fspath(db) if db is not None else None)
        self._state = RUN
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}  # apply_async calls not finished yet
        self._groups: list[Group] = []
        self.group_id: str | None = None  # the latest map's group
        self._watcher = Watcher(self.queue)
        self._supervisor: EmbeddedSupervisor | None = EmbeddedSupervisor(
            self.queue, processes, [queue], max_jobs_per_worker=maxtasksperchild
        )

    def __repr__(self) -> str:
        return f"<jobq.Pool state={self._state} pool_size={self._processes} db={self.queue.path!r}>"

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    # -- one call ----------------------------------------------------------------------
    def apply(self, func: Callable[..., Any] | str, args: Iterable[Any] = (), kwds: dict[str, Any] | None = None) -> Any:
        """``func(*args, **kwds)`` as a job; waits for and returns its value."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any] | str,
        args: Iterable[Any] = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[Any], None] | None = None,
        error_callback: Callable[[BaseException], None] | None = None,
    ) -> ApplyResult:
        """Submit ``func(*args, **kwds)`` as a job; an :class:`ApplyResult`."""
        self._check_running()
        job = self.queue.submit(func, tuple(args), kwds or {}, queue=self._queue_name, **self._options)
        result = ApplyResult(job, callback, error_callback)
        with self._lock:
            self._jobs[job.id] = job

        def done(outcome: Outcome | None) -> None:
            with self._lock:
                self._jobs.pop(job.id, None)
            result._done(outcome)

        self._watcher.watch_job(job.id, done)
        return result

    # -- maps ---------------------------------------------------------------------------
    def _submit_map(self, func: Callable[..., Any] | str, iterable: Iterable[Any], chunksize: int | None, star: bool) -> Group:
        """One group: ``func(item)`` per item (``func(*item)`` with ``star``)."""
        self._check_running()
        items: Sequence[Any] = iterable if isinstance(iterable, (list, tuple, range)) else list(iterable)
        if chunksize is None:
            chunksize = auto_chunksize(len(items), self._processes)
        options = dict(self._options, queue=self._queue_name)
        if check_chunksize(chunksize) > 1:
            group = self.queue._map_chunks(func, items, chunksize, options, spread=star)
        else:
            group = self.queue.map(func, (tuple(x) if star else (x,) for x in items), **options)
        with self._lock:
            self._groups.append(group)
            self.group_id = group.id
        log.info("jobq.Pool: %d tasks submitted as group %s (chunksize %d)", len(items), group.id, chunksize)
        return group

    def map(self, func: Callable[..., Any] | str, iterable: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        """``[func(x) for x in iterable]`` run as jobs; results in input order."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(
        self,
        func: Callable[..., Any] | str,
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], None] | None = None,
        error_callback: Callable[[BaseException], None] | None = None,
    ) -> MapResult:
        """Submit ``map`` as one group; a :class:`MapResult`."""
        group = self._submit_map(func, iterable, chunksize, star=False)
        return self._watch_map(group, callback, error_callback)

    def starmap(
        self, func: Callable[..., Any] | str, iterable: Iterable[Iterable[Any]], chunksize: int | None = None
    ) -> list[Any]:
        """``[func(*args) for args in iterable]`` run as jobs; results in input order."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(
        self,
        func: Callable[..., Any] | str,
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], None] | None = None,
        error_callback: Callable[[BaseException], None] | None = None,
    ) -> MapResult:
        """Submit ``starmap`` as one group; a :class:`MapResult`."""
        group = self._submit_map(func, iterable, chunksize, star=True)
        return self._watch_map(group, callback, error_callback)

    def _watch_map(self, group: Group, callback: Any, error_callback: Any) -> MapResult:
        result = MapResult(group, callback, error_callback)
        self._watcher.watch_group(group, result._done)
        return result

    def imap(self, func: Callable[..., Any] | str, iterable: Iterable[Any], chunksize: int = 1) -> ResultIterator:
        """Like :meth:`map`, as an iterator of results in input order (``next(timeout)``)."""
        group = self._submit_map(func, iterable, chunksize, star=False)
        return ResultIterator(group, ordered=True, timeout_error=multiprocessing.TimeoutError)

    def imap_unordered(self, func: Callable[..., Any] | str, iterable: Iterable[Any], chunksize: int = 1) -> ResultIterator:
        """Like :meth:`imap`, results in the order they finish."""
        group = self._submit_map(func, iterable, chunksize, star=False)
        return ResultIterator(group, ordered=False, timeout_error=multiprocessing.TimeoutError)

    # -- life ---------------------------------------------------------------------------
    def close(self) -> None:
        """Accept no more tasks; :meth:`join` then waits for the submitted ones."""
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self) -> None:
        """Cancel the pool's unfinished tasks and stop its supervisor now."""
        self._state = TERMINATE
        ids = self._unfinished_ids()
        if ids:
            self.queue.cancel(*ids)
        self._stop(now=True)
        # A stopping supervisor puts the tasks it ends back in the queue: cancel those too.
        ids = self._unfinished_ids()
        if ids:
            self.queue.cancel(*ids)

    def join(self, timeout: float | None = None) -> None:
        """Wait for every submitted task (after :meth:`close` or :meth:`terminate`), then stop
        the pool's supervisor."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state == CLOSE:
            if not wait_until(lambda: not self._unfinished_ids(), timeout):
                raise multiprocessing.TimeoutError
        self._stop(now=self._state == TERMINATE)

    def _unfinished_ids(self) -> list[int]:
        with self._lock:
            ids = list(self._jobs) + [i for g in self._groups for i in g.job_ids]
        states = self.queue.store.get_states(ids)
        unfinished = [i for i in ids if states.get(i) not in FINISHED_STATES and i in states]
        with self._lock:  # forget what finished: joins stay cheap on a long-lived pool
            done = set(ids) - set(unfinished)
            self._jobs = {i: j for i, j in self._jobs.items() if i not in done}
            self._groups = [g for g in self._groups if not all(i in done for i in g.job_ids)]
        return unfinished

    def _stop(self, now: bool) -> None:
        sup, self._supervisor = self._supervisor, None
        if sup is not None:
            sup.stop(now=now)
        if not now:  # every result is in: let the watcher deliver the last callbacks
            wait_until(lambda: not self._watcher.pending(), 5)
        self._watcher.close()

    @property
    def supervisor_pid(self) -> int | None:
        """The pid of the pool's embedded supervisor (None once stopped)."""
        return self._supervisor.pid if self._supervisor is not None else None

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def __del__(self) -> None:
        if getattr(self, "_supervisor", None) is not None and self._state == RUN:
            try:
                self.terminate()
            except Exception:  # noqa: BLE001 - interpreter shutdown: atexit drains it anyway
                pass
