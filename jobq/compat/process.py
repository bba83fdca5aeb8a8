"""``jobq.Process``: the ``multiprocessing.Process`` shape, run as a durable job.

``start()`` submits the job; a supervisor runs it (one already serving the database and
queue on this host, or one embedded in this program until its started processes are
joined); ``join()`` returns the target's return value.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..client.failures import job_failed
from ..client.options import SubmitOptions
from ..client.queue import Job, Queue
from ..core.errors import JobFailed
from ..core.models import CANCELLED, FAILED, FINISHED_STATES, SUCCEEDED, JobError
from ..store import JobResult
from .embedded import EmbeddedSupervisor

log = logging.getLogger("jobq.process")

_counter = itertools.count(1)
_lock = threading.Lock()
_queues: dict[str | None, Queue] = {}
# One embedded supervisor per (database, queue), with the job ids of the processes that
# use it and have not been joined yet: the last join stops it.
_embedded: dict[tuple[str, str], tuple[EmbeddedSupervisor, set[int]]] = {}


def _queue_for(db: str | os.PathLike[str] | None) -> Queue:
    key = None if db is None else os.fspath(db)
    with _lock:
        q = _queues.get(key)
        if q is None:
            q = _queues[key] = Queue(key)
        return q


def _served_elsewhere(q: Queue, queue: str) -> bool:
    """Whether a live supervisor on this host (not ours) serves ``queue`` of ``q``'s database."""
    host = q.settings.host()
    return any(s.host == host and (s.queues is None or queue in s.queues) for s in q.live_supervisors())


def _acquire(q: Queue, queue: str, job_id: int) -> None:
    key = (q.path, queue)
    with _lock:
        entry = _embedded.get(key)
        if entry is not None and entry[0].alive():
            entry[1].add(job_id)
            return
    if _served_elsewhere(q, queue):
        return
    with _lock:
        entry = _embedded.get(key)
        if entry is None or not entry[0].alive():
            entry = _embedded[key] = (EmbeddedSupervisor(q, None, [queue]), set())
            log.info("jobq.Process: started an embedded supervisor (pid %s) for queue %s", entry[0].pid, queue)
        entry[1].add(job_id)


def _release(q: Queue, queue: str, job_id: int) -> None:
    key = (q.path, queue)
    with _lock:
        entry = _embedded.get(key)
        if entry is None or job_id not in entry[1]:
            return
        entry[1].discard(job_id)
        if entry[1]:
            return
        del _embedded[key]
    entry[0].stop()


def _exitcode(state: str, error: JobError | None) -> int | None:
    if state not in FINISHED_STATES:
        return None
    if state == SUCCEEDED:
        return 0
    if state == FAILED and error is not None and error.type == "WorkerDied":
        cause = error.message.rpartition(": ")[2]
        if cause.startswith("signal "):
            name = cause.removeprefix("signal ")
            try:
                return -int(signal.Signals[name]) if not name.isdigit() else -int(name)
            except KeyError:
                return 1
        if cause.startswith("exit code "):
            try:
                return int(cause.removeprefix("exit code "))
            except ValueError:
                return 1
    return 1


class Process:
    """``multiprocessing.Process`` as a durable job: ``start()`` submits ``target(*args,
    **kwargs)``, ``join()`` waits and returns its value.

    ``db`` defaults to the database the CLI would use (``JOBQ_DB``, the config file,
    ``./jobq.db``); ``options`` are :meth:`Queue.submit`'s. With ``supervise`` (the default)
    a supervisor is embedded in this program while started processes are unjoined, unless
    one already serves the database and queue on this host. ``echo_output`` writes what the
    job printed to this program's stdout when ``join()`` sees it finish, as a child
    process's prints would appear.
    """

    def __init__(
        self,
        target: str | Callable[..., Any] | None = None,
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        *,
        db: str | os.PathLike[str] | None = None,
        queue: str = "default",
        supervise: bool = True,
        echo_output: bool = True,
        **options: Any,
    ) -> None:
        if target is None:
            raise ValueError("jobq.Process needs a target (a function or 'package.module:function')")
        SubmitOptions.of(
            options, allowed=SubmitOptions.names() - {"queue", "name"}, where="jobq.Process", hint=" (those of Queue.submit)"
        )
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self.name = name or f"Process-{next(_counter)}"
        self._db = db
        self._queue_name = queue
        self._supervise = supervise
        self._echo = echo_output
        self._options = options
        self._q: Queue | None = None
        self.job: Job | None = None
        self._final: JobResult | None = None

    def __repr__(self) -> str:
        state = "initial" if self.job is None else (self._final.state.value if self._final else "started")
        return f"<jobq.Process name={self.name!r} job={self.job.id if self.job else None} {state}>"

    def start(self) -> None:
        """Submit the job (and see that a supervisor runs it)."""
        if self.job is not None:
            raise RuntimeError("cannot start a process twice")
        q = self._q = _queue_for(self._db)
        self.job = q.submit(self._target, self._args, self._kwargs, queue=self._queue_name, name=self.name, **self._options)
        if self._supervise:
            _acquire(q, self._queue_name, self.job.id)

    def _outcome(self) -> JobResult | None:
        if self.job is None:
            return None
        if self._final is None:
            assert self._q is not None
            found = self._q.store.outcome(self.job.id)
            if found is not None and found.state.finished:
                self._finished(found)
            else:
                return found
        return self._final

    def _finished(self, outcome: JobResult) -> None:
        if self._final is not None:
            return
        self._final = outcome
        assert self._q is not None and self.job is not None
        if self._echo:
            text = self._q.logs(self.job.id)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
        _release(self._q, self._queue_name, self.job.id)

    def join(self, timeout: float | None = None) -> Any:
        """Wait for the job; its return value. None when ``timeout`` passes first, or when it
        was cancelled (``terminate()``); raises :class:`jobq.JobFailed` when it failed."""
        if self.job is None:
            raise AssertionError("can only join a started process")
        if self._final is None:
            try:
                self.job.join(timeout)
            except TimeoutError:
                return None
            except JobFailed:
                pass
            assert self._q is not None
            found = self._q.store.outcome(self.job.id)
            if found is None:
                raise JobFailed(self.job.id, "JobNotFound", "the job is gone from the database (purged?)")
            self._finished(found)
        assert self._final is not None
        state, result, error = self._final.state, self._final.result, self._final.error or JobError("Error")
        if state == SUCCEEDED:
            return result
        if state == CANCELLED:
            return None
        raise job_failed(self.job.id, state, error)

    def is_alive(self) -> bool:
        """Started and not finished (queued, waiting or running)."""
        found = self._outcome()
        return found is not None and not found.state.finished

    @property
    def exitcode(self) -> int | None:
        """None until finished; 0 succeeded; 1 failed or cancelled; ``-N`` when signal N
        killed its worker (a worker's own exit code when it exited mid-job)."""
        found = self._outcome()
        return None if found is None else _exitcode(found.state, found.error)

    @property
    def pid(self) -> int | None:
        """The pid of the worker running (or that ran) the job, once known."""
        if self.job is None:
            return None
        assert self._q is not None
        return self._q.record(self.job.id).worker

    ident = pid

    def terminate(self) -> None:
        """Cancel the job: a queued one at once, a running one within a heartbeat."""
        if self.job is not None:
            self.job.cancel()

    kill = terminate
