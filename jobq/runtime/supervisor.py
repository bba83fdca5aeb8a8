"""The supervisor: one process that forks a pool of workers (:mod:`.workerpool`), claims
jobs for them in batches (:mod:`.dispatch`), runs its periodic duties (:mod:`.duties`) and
handles crashes, timeouts, cancels and drains.

Workers write their own results; the supervisor writes the outcomes only it can know (a
worker died, a timeout, a cancel, a drain) and those a worker could not write. Signal
handlers only set flags; :meth:`Supervisor.tick` is one iteration of the main loop, driven
by a monotonic time a test can inject."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import selectors
import signal
import time
import uuid
from collections import deque
from typing import Any

from ..core.config import QUEUE_NAME_PATTERN, Settings
from ..core.errors import StoreError, ValidationError
from ..core.fsmodes import prepare_database_file
from ..core.local import LocalPresence, presence_id
from ..core.models import Outcome, OutcomeKind
from ..store import ProgressUpdate, Store, SupervisorInfo, open_store
from .background import InBackground
from .crashloop import CrashLoop
from .dispatch import Dispatcher
from .duties import Duties
from .flow import apply_queue_settings
from .logformat import set_context
from .notify import NO_NOTIFIER, Notifier
from .oom import OomWatch
from .reports import ReportHandling
from .schedules import sync_schedules
from .tending import NOTE_WORKER_AFTER, WorkerTending
from .workerpool import WorkerPool

log = logging.getLogger("jobq.supervisor")


class Supervisor(InBackground, ReportHandling, WorkerTending):
    """Runs jobs of a queue on ``concurrency`` worker processes.

    ``Supervisor(q).run()`` blocks (what ``jobq worker start`` runs); used as a context
    manager it runs in a background process and drains gracefully on exit.
    """

    def __init__(
        self,
        queue: Any,
        concurrency: int | None = None,
        queues: list[str] | None = None,
        *,
        burst: bool = False,
        grace: float | None = None,
        max_jobs_per_worker: int | None = None,
        max_memory_per_worker: int | None = None,
        start_method: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        if isinstance(queue, (str, os.PathLike)):
            from ..core.config import load_settings

            settings = settings or load_settings(overrides={"db": str(queue)})
            prepare_database_file(str(queue), settings.file_mode)
            self.store: Store = open_store(str(queue), settings.busy_timeout_seconds, settings.durability)
        else:
            self.store = queue.store
            settings = settings or queue.settings
        assert settings is not None
        self.settings = settings
        self.concurrency = concurrency or settings.effective_concurrency()
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValidationError("concurrency", "must be a whole number of at least 1")
        for name in queues or ():
            if not isinstance(name, str) or not re.match(QUEUE_NAME_PATTERN, name):
                raise ValidationError("queue", f"bad queue name {name!r}: 1-64 of letters, digits, _ . -")
        self.queues = list(queues) if queues else None
        self.burst = burst
        self.grace = settings.grace_seconds if grace is None else grace
        self.max_jobs_per_worker = max_jobs_per_worker or settings.max_jobs_per_worker
        self.max_memory_per_worker = max_memory_per_worker or settings.max_memory_per_worker
        self.start_method = start_method or settings.start_method
        self.id = uuid.uuid4().hex[:12]
        # systemd's notify protocol (READY/STOPPING/WATCHDOG); `jobq worker start` sets it.
        self.notifier: Notifier = NO_NOTIFIER
        self._background: Any = None
        self._reset_state()

    def _reset_state(self) -> None:
        """All loop state, built before the loop runs (again, for a second :meth:`run`)."""
        self.stopping = False
        self.stop_now = False
        self._signals: deque[int] = deque()
        self._drain_deadline: float | None = None  # monotonic
        self._outcomes: list[Outcome] = []
        self._progress: dict[int, ProgressUpdate] = {}
        self._noted: dict[int, tuple[int, int]] = {}
        self._published: dict[int, tuple[int, int, int]] = {}  # slot -> (job, attempt, output size) last stored
        self._next_output_at = 0.0  # slot -> (job, attempt) whose worker pid is stored
        self._store_fd: int | None = None
        self._info: SupervisorInfo | None = None
        self._presence: LocalPresence | None = None
        self._checkpointer: Any = None
        self._idle_wait = 0.001
        self._claimed = 0
        self._next_wait = 0.0
        self._selector: selectors.BaseSelector | None = None
        self.pool: WorkerPool | None = None
        self.dispatcher: Dispatcher | None = None
        self.duties: Duties | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_background"] = None
        for name in ("pool", "dispatcher", "duties", "_selector", "_presence", "_checkpointer"):
            state[name] = None
        return state

    # -- running --------------------------------------------------------------------
    def run(self) -> int:
        """Run in this process until drained (signal) or, with ``burst``, out of work."""
        old_handlers = self._install_signals()
        try:
            self.open()
            while self.tick(time.monotonic()):
                self.wait()
        finally:
            self.close()
            self._restore_signals(old_handlers)
        done = self.dispatcher.jobs_done if self.dispatcher else 0
        log.info("supervisor %s stopped after %d jobs", self.id, done, extra={"event": "supervisor_stopped"})
        return 0

    def open(self) -> None:
        """Register, start the workers and the checkpointer: ready for :meth:`tick`."""
        self._reset_state()
        # A store of our own: its session settings (tune_for_runner) must not reach the
        # connection the embedding application submits on.
        self.store = open_store(self.store.url, self.settings.busy_timeout_seconds, self.settings.durability)
        set_context(supervisor=self.id)  # every JSON log line names its supervisor
        presence = LocalPresence(self.store.url, self.id, self.settings.file_mode)
        presence.acquire()
        self._presence = presence
        wall = time.time()
        self._info = SupervisorInfo(
            id=self.id,
            host=self.settings.host(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            queues=self.queues,
            started_at=wall,
            heartbeat_at=wall,
            lock_path=presence.lock_path,
            presence=presence_id(self.store.url, self.settings.host()),
        )
        self._ctx: Any = multiprocessing.get_context(self.start_method)
        self.pool = WorkerPool(self._ctx, self.concurrency, presence.work_dir(), self._worker_config)
        self.dispatcher = Dispatcher(self.store, self.pool, self.id, self.queues, self.settings.lease_seconds)
        self._oom = OomWatch()
        self._crash_loop = CrashLoop(self.id)
        self.duties = Duties(self.store, self.settings, self._info, presence)
        # One selector for the supervisor's life: rebuilding one per wait cost a fifth of its CPU.
        self._selector = selectors.DefaultSelector()
        if presence.sock is not None:
            self._selector.register(presence.sock, selectors.EVENT_READ, ("wake", None))
        self.store.tune_for_runner(self.settings.lease_seconds)
        self.store.register_supervisor(self._info)
        sync_schedules(self.store, self.settings, wall)
        apply_queue_settings(self.store, self.settings, wall)  # the config's caps and rates hold for every supervisor
        log.info(
            "supervisor %s started: pid %d, %d workers, queues %s, db %s",
            self.id,
            os.getpid(),
            self.concurrency,
            ",".join(self.queues) if self.queues else "*",
            self.store.url,
            extra={"event": "supervisor_started"},
        )
        self.duties.run(time.monotonic(), self.stopping, self._cancel_running)
        for slot in range(self.concurrency):
            self._start_worker(slot)
        self._start_checkpointer()
        self.notifier.ready(f"serving {self.concurrency} workers")

    def tick(self, now: float) -> bool:
        """One iteration of the main loop at monotonic time ``now``; never waits. False once
        the supervisor should exit."""
        assert self.pool is not None and self.dispatcher is not None and self.duties is not None
        self._handle_signals(now)
        self._read_reports()
        self._reap_workers(now)
        self._enforce_deadlines(now)
        self._note_workers(now)
        self._publish_output(now)
        if self.duties.due(now):
            self.duties.run(now, self.stopping, self._cancel_running)
            self.notifier.watchdog()  # every heartbeat, when systemd's watchdog is on
        self._flush_outcomes()
        for w in self.pool.workers:
            if w.outbox:
                w.flush()
        self._claimed = 0
        if not self.stopping:
            self._claimed = self.dispatcher.dispatch(time.time())
            if self.dispatcher.give_back:
                self._outcomes += self.dispatcher.give_back
                self.dispatcher.give_back = []
        busy = any(w.tasks for w in self.pool.workers)
        if self.stopping and not busy:
            self._flush_outcomes()
            return False
        if self.burst and not busy and not self._claimed and not self._outcomes:
            if not self.store.has_runnable(self.queues, time.time(), slots=self.concurrency):
                self.stopping = True
                return False
        self._next_wait = self._wait_seconds(now)
        return True

    def _wait_seconds(self, now: float) -> float:
        assert self.pool is not None and self.duties is not None
        if self._claimed:
            self._idle_wait = 0.001
        timeout = 0.5  # with every worker busy, results and deaths wake us anyway
        if not self.stopping and any(w.idle for w in self.pool.workers):
            timeout = self._idle_wait
            if not self._claimed:
                self._idle_wait = min(self._idle_wait * 2, self.settings.idle_poll_seconds)
        timeout = min(timeout, max(0.0, self.duties.next_at - now))
        for w in self.pool.workers:
            task, started = self.pool.current(w)
            if task is not None and self._noted.get(w.slot) != (task.id, task.attempts):
                # wake to write it running once it has run NOTE_WORKER_AFTER seconds
                timeout = min(timeout, max(0.0, started + NOTE_WORKER_AFTER - now) + 0.001)
            elif task is None and w.tasks:  # sent, not taken yet: look again soon
                timeout = min(timeout, NOTE_WORKER_AFTER)
            if task is not None and task.timeout:
                timeout = min(timeout, max(0.0, started + task.timeout - now) + 0.001)
            if w.kill_deadline is not None:
                timeout = min(timeout, max(0.0, w.kill_deadline - now))
        if self.stopping:
            timeout = min(timeout, 0.05)
        if self._outcomes:
            timeout = 0.0
        return timeout

    def wait(self, timeout: float | None = None) -> None:
        """Sleep until a worker reports, a worker dies, a pipe drains, a submitter pokes us,
        or the next deadline (``timeout``, else what the last :meth:`tick` computed)."""
        assert self._selector is not None and self.pool is not None
        timeout = self._next_wait if timeout is None else timeout
        store_fd = self.store.wakeup_fileno()
        if store_fd != self._store_fd:
            if self._store_fd is not None:
                self._selector.unregister(self._store_fd)
            if store_fd is not None:
                self._selector.register(store_fd, selectors.EVENT_READ, ("store", None))
            self._store_fd = store_fd
        writers = [w for w in self.pool.workers if w.outbox]
        for w in writers:
            self._selector.register(w.tasks_out.fileno(), selectors.EVENT_WRITE, ("writable", w))
        try:
            events = self._selector.select(timeout)
        finally:
            for w in writers:
                self._selector.unregister(w.tasks_out.fileno())
        for key, _ in events:
            kind, w = key.data
            if kind == "worker":
                self._read_worker(w)
            elif kind == "writable":
                w.flush()
            elif kind == "wake":
                assert self._presence is not None
                self._presence.drain()
                self._idle_wait = 0.001
            elif kind == "store":
                self.store.drain_wakeups()
                self._idle_wait = 0.001
            # "sentinel": a worker died; the next tick reaps it.

    # -- writing --------------------------------------------------------------------
    def _flush_outcomes(self) -> None:
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            try:
                rejected = self.store.finish(self.id, outcomes, time.time())
            except StoreError:
                self._outcomes = outcomes + self._outcomes
                raise
            for job_id in rejected:
                log.warning("job %d: result dropped, the job was taken back from this supervisor", job_id)
        if self._progress:
            updates, self._progress = list(self._progress.values()), {}
            self.store.set_progress(self.id, updates)

    # -- signals and shutdown -------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        old: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: the embedding app handles signals
                pass
        return old

    @staticmethod
    def _restore_signals(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def signal_received(self, signum: int) -> None:
        """Act on ``signum`` (SIGTERM, SIGINT) at the next tick, as the handler does."""
        self._signals.append(signum)

    def _handle_signals(self, now: float) -> None:
        assert self.pool is not None
        while self._signals:
            signum = self._signals.popleft()
            if not self.stopping:
                self.stopping = True
                self.pool.draining.value = 1
                self._drain_deadline = now + self.grace
                log.info(
                    "supervisor %s draining (%s): up to %gs for running jobs",
                    self.id,
                    signal.Signals(signum).name,
                    self.grace,
                    extra={"event": "supervisor_draining"},
                )
                self.notifier.stopping(f"draining: up to {self.grace:g}s for running jobs")
            elif signum == signal.SIGINT and not self.stop_now:
                self.stop_now = True
                self._drain_deadline = now
                log.info("supervisor %s: second interrupt, ending running jobs now", self.id)

    def close(self) -> None:
        """Stop the workers, release what they held, write the last outcomes, unregister."""
        if self.pool is not None:
            self.pool.stop_all(5.0)
            # Anything still held (an error path) goes back to the queue, attempt not counted.
            for w in self.pool.workers:
                self._read_worker(w)
                for job_id, task in w.tasks.items():
                    self._outcomes.append(Outcome(job_id, task.attempts, OutcomeKind.RELEASED, worker=w.pid))
                w.tasks.clear()
        try:
            if self._info is not None:
                self._flush_outcomes()
                self.store.flush_figures()
                self.store.unregister_supervisor(self.id)
        except StoreError as exc:
            log.error("supervisor %s: could not write its last results: %s", self.id, exc)
        if self._checkpointer is not None:
            self._checkpointer.kill()  # it ignores SIGTERM like the workers; a checkpoint is safe to cut
            self._checkpointer.join(5)
            self._checkpointer = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self._presence is not None:
            self._presence.release()  # the lock, the socket and the workers' output files
            self._presence = None
