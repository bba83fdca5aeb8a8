"""Waiting on many jobs at once, for ``jobq.Pool`` and ``jobq.Executor``.

:class:`Watcher` is one thread that looks up every watched job in one read per round and
calls each one's callback when it finishes (as ``multiprocessing.Pool``'s result thread
calls ``callback``); :class:`ResultIterator` yields a group's results as they come, in input
order or as completed (``imap``, ``imap_unordered``, ``Executor.map``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.errors import JobqError
from ..core.models import FINISHED_STATES, SUCCEEDED
from ..store import JobResult, Store
from .failures import failure
from .polling import Backoff
from .protocols import GroupLike, QueueLike

log = logging.getLogger("jobq.watch")

Outcome = JobResult


def outcomes(store: Store, ids: list[int]) -> dict[int, Outcome | None]:
    """The outcome of each finished (or vanished: None) job among ``ids``."""
    states = store.get_states(ids)
    out: dict[int, Outcome | None] = {}
    for job_id in ids:
        state = states.get(job_id)
        if state is None:
            out[job_id] = None
        elif state in FINISHED_STATES:
            out[job_id] = store.outcome(job_id)
    return out


def _pause(store: Store, cond: threading.Condition, delay: float) -> None:
    if type(store).wait_for_change is not Store.wait_for_change:
        store.wait_for_change(delay)  # PostgreSQL: LISTEN/NOTIFY wakes us on a finish
    else:
        with cond:
            cond.wait(delay)


class Watcher:
    """A thread that calls ``on_done(outcome)`` once each watched job finishes, and
    ``on_done(error)`` once each watched group has (see ``GroupLike.finished``; ``error`` is
    what a join would raise before reading the results, usually None)."""

    def __init__(self, queue: QueueLike) -> None:
        self.store = queue.store
        self._jobs: dict[int, Callable[[Outcome | None], None]] = {}
        self._groups: dict[int, tuple[GroupLike, Callable[[Exception | None], None]]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_add = self._seen_add = 0.0

    def watch_job(self, job_id: int, on_done: Callable[[Outcome | None], None]) -> None:
        self._add(lambda: self._jobs.__setitem__(job_id, on_done))

    def watch_group(self, group: GroupLike, on_done: Callable[[Exception | None], None]) -> None:
        self._add(lambda: self._groups.__setitem__(id(group), (group, on_done)))

    def _add(self, put: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("watcher closed")
            put()
            self._last_add = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jobq-watcher", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._jobs) + len(self._groups)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        pace = Backoff()
        while True:
            with self._cond:
                if not self._jobs and not self._groups:
                    while not self._jobs and not self._groups and not self._closed:
                        self._cond.wait()
                    pace.progress()
                if self._last_add > self._seen_add:
                    self._seen_add = self._last_add
                    pace.progress()
                if self._closed:
                    return
                jobs = list(self._jobs)
                groups = list(self._groups.items())
            started = time.monotonic()
            try:
                found = outcomes(self.store, jobs) if jobs else {}
                before = sum(group.done_jobs for _, (group, _) in groups)
                done_groups = [(key, error) for key, (group, _) in groups for done, error in [_group_done(group)] if done]
                moving = sum(group.done_jobs for _, (group, _) in groups) != before
            except Exception as exc:  # noqa: BLE001 - the store is away: try again later
                log.warning("watcher: %s", exc)
                found, done_groups, moving = {}, [], False
            for job_id, outcome in found.items():
                with self._cond:
                    callback = self._jobs.pop(job_id, None)
                if callback is not None:
                    _call(callback, outcome)
            for key, error in done_groups:
                with self._cond:
                    entry = self._groups.pop(key, None)
                if entry is not None:
                    _call(entry[1], error)
            spent = time.monotonic() - started
            # Back off while nothing happens; never poll more than a tenth of the time.
            if found or done_groups or moving:
                pace.progress()
            _pause(self.store, self._cond, max(pace.next(), 10 * spent))


def _group_done(group: GroupLike) -> tuple[bool, Exception | None]:
    """Whether a join of ``group`` would return now (and the error it would raise first)."""
    try:
        return group.finished(), None
    except JobqError as exc:  # GroupIncomplete: its submitter died mid-map
        return True, exc


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:  # a user callback's failure must not stop the watcher
        log.exception("jobq: a result callback raised")


class ResultIterator:
    """The results of a group, one item at a time: in input order (``ordered``) or as they
    finish. ``next(timeout)`` raises ``timeout_error`` when none comes in time; a failed item
    raises :class:`JobFailed` (naming its index) at its turn, and iteration may go on."""

    def __init__(
        self, group: GroupLike, ordered: bool, deadline: float | None = None, timeout_error: type[Exception] = TimeoutError
    ) -> None:
        self.group = group
        self.ordered = ordered
        self.deadline = deadline
        self.timeout_error = timeout_error
        self._pending = deque(range(len(group.job_ids)))  # positions not yet read back
        self._ready: dict[int, Outcome | None] = {}
        self._next = 0  # the next position to yield (ordered)
        self._buffer: deque[tuple[bool, Any]] = deque()
        self._store = group.queue.store
        self._cond = threading.Condition()
        self._pace = Backoff()

    def __iter__(self) -> ResultIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        deadline = self.deadline
        if timeout is not None:
            deadline = time.monotonic() + timeout if deadline is None else min(deadline, time.monotonic() + timeout)
        while not self._buffer:
            if not self._pending and not self._ready:
                raise StopIteration
            if self._poll():
                self._pace.progress()
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise self.timeout_error(f"group {self.group.id}: no result within the timeout")
            delay = self._pace.next()
            wait = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            _pause(self._store, self._cond, wait)
        ok, value = self._buffer.popleft()
        if not ok:
            raise value
        return value

    def _poll(self) -> bool:
        """Read back what finished; queue up what can be yielded. Whether anything can."""
        ids = self.group.job_ids
        window = [self._pending[i] for i in range(min(len(self._pending), 1000))]
        found = outcomes(self._store, [ids[p] for p in window])
        if found:
            by_id = {ids[p]: p for p in window}
            for job_id, outcome in found.items():
                self._ready[by_id[job_id]] = outcome
            self._pending = deque(p for p in self._pending if p not in self._ready)
        if self.ordered:
            while self._next in self._ready:
                self._emit(self._next, self._ready.pop(self._next))
                self._next += 1
        else:
            for position in sorted(self._ready):
                self._emit(position, self._ready.pop(position))
        return bool(self._buffer)

    def _emit(self, position: int, outcome: Outcome | None) -> None:
        layout = self.group.layout
        job_id = self.group.job_ids[position]
        if outcome is None or outcome.state != SUCCEEDED:
            if layout is None:
                index = position
            else:
                from ..worker.chunks import failed_index

                index = failed_index(layout, position, outcome.error if outcome else None)
            self._buffer.append((False, failure(job_id, outcome, index)))
        elif layout is None:
            self._buffer.append((True, outcome.result))
        else:
            self._buffer.extend((True, value) for value in outcome.result)
