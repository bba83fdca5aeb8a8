"""The supervisor: one process that forks a pool of workers, claims jobs for them in
batches, writes their results back, and handles crashes, timeouts, cancels and drains.

It is the only writer of its jobs' rows. Signal handlers only set flags; :meth:`tick`
is one iteration of the main loop."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import select
import selectors
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .config import QUEUE_NAME_PATTERN, Settings
from .errors import StoreError, ValidationError
from .local import LocalPresence, is_dead
from .models import ClaimedJob, Outcome
from .schedules import next_run_after, sync_schedules
from .store import Store, SupervisorInfo, open_store
from .worker import (
    SLOT_ATTEMPT,
    SLOT_JOB,
    SLOT_OUTPUT_AT,
    SLOT_SIZE,
    SLOT_STARTED,
    WorkerConfig,
    checkpointer_main,
    outcome_of,
    read_range,
    set_process_name,
    worker_main,
)

log = logging.getLogger("jobq.supervisor")

# How far ahead of a worker's pace to claim: about this many seconds of work per batch.
PREFETCH_SECONDS = 0.004
MAX_BATCH = 256
# How often the checkpointer process copies the SQLite WAL back into the database.
CHECKPOINT_SECONDS = 0.25


@dataclass
class _Worker:
    process: Any
    conn: Connection
    slot: int
    capture_path: str
    tasks: dict[int, ClaimedJob] = field(default_factory=dict)
    kill_reason: tuple[str, dict[str, Any], bool] | None = None
    kill_deadline: float | None = None
    retiring: bool = False
    poller: Any = None

    def __post_init__(self) -> None:
        self.poller = select.poll()
        self.poller.register(self.conn.fileno(), select.POLLIN)

    @property
    def pid(self) -> int:
        return self.process.pid


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown cause"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class Supervisor:
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
            from .config import load_settings

            settings = settings or load_settings(overrides={"db": str(queue)})
            self.store: Store = open_store(str(queue), settings.busy_timeout_seconds)
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
        self._background: Any = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.stopping = False
        self.stop_now = False
        self._signals: deque[int] = deque()
        self._drain_deadline: float | None = None
        self.workers: list[_Worker] = []
        self._outcomes: list[Outcome] = []
        self._progress: dict[int, tuple[int, int, float, str]] = {}
        self._next_maintenance = 0.0
        self._store_fd: int | None = None
        self._info: SupervisorInfo | None = None
        self._checkpointer: Any = None
        self._next_purge = 0.0
        self._idle_wait = 0.001
        self._avg_job_seconds = 0.0
        self._jobs_done = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_background"] = None
        state["workers"] = []
        return state

    # -- embedding ------------------------------------------------------------------
    def start(self) -> Supervisor:
        """Run this supervisor in a background process; returns self."""
        if self._background is not None:
            raise RuntimeError("supervisor already started")
        ctx = multiprocessing.get_context(self.start_method)
        self._background = ctx.Process(target=_run_in_background, args=(self,), name=f"jobq-supervisor-{self.id}")
        self._background.start()
        return self

    @property
    def pid(self) -> int | None:
        """The pid of the background supervisor process (None before start)."""
        return self._background.pid if self._background is not None else None

    def stop(self, timeout: float | None = None) -> int | None:
        """Drain the background supervisor (SIGTERM) and wait for it; returns its exit code."""
        proc = self._background
        if proc is None:
            return None
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
        proc.join(timeout if timeout is not None else self.grace + self.settings.kill_grace_seconds + 30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        self._background = None
        return proc.exitcode

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Supervisor:
        """``async with Supervisor(q):`` starts it in a background process without blocking the
        event loop (the fork and the drain run on a thread), for an async service's lifespan."""
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    # -- running --------------------------------------------------------------------
    def run(self) -> int:
        """Run in this process until drained (signal) or, with ``burst``, out of work."""
        self._reset_state()
        # A store of our own: its session settings (tune_for_runner) must not reach the
        # connection the embedding application submits on.
        self.store = open_store(self.store.url, self.settings.busy_timeout_seconds)
        presence = LocalPresence(self.store.url, self.id)
        presence.acquire()
        self._presence = presence
        now = time.time()
        info = SupervisorInfo(
            id=self.id,
            host=self.settings.host(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            queues=self.queues,
            started_at=now,
            heartbeat_at=now,
            lock_path=presence.lock_path if presence else None,
        )
        self._info = info
        old_handlers = self._install_signals()
        self._capture_dir = presence.work_dir()
        self._ctx = multiprocessing.get_context(self.start_method)
        self._slots = self._ctx.RawArray("d", SLOT_SIZE * self.concurrency)
        # One selector for the supervisor's life: rebuilding one per wait cost a fifth of its CPU.
        self._selector = selectors.DefaultSelector()
        if presence.sock is not None:
            self._selector.register(presence.sock, selectors.EVENT_READ, ("wake", None))
        self._draining = self._ctx.RawValue("b", 0)
        try:
            self.store.tune_for_runner()
            self.store.register_supervisor(info)
            sync_schedules(self.store, self.settings, time.time())
            log.info(
                "supervisor %s started: pid %d, %d workers, queues %s, db %s",
                self.id,
                os.getpid(),
                self.concurrency,
                ",".join(self.queues) if self.queues else "*",
                self.store.url,
            )
            self._maintenance(time.time())
            for slot in range(self.concurrency):
                self._start_worker(slot)
            self._start_checkpointer()
            while self.tick():
                pass
        finally:
            self._shutdown()
            self._restore_signals(old_handlers)
        log.info("supervisor %s stopped after %d jobs", self.id, self._jobs_done)
        return 0

    def tick(self) -> bool:
        """One iteration of the main loop; False once the supervisor should exit."""
        now = time.time()
        self._handle_signals(now)
        self._reap_workers(now)
        self._enforce_deadlines(now)
        if now >= self._next_maintenance:
            self._maintenance(now)
        self._flush(now)
        claimed = 0
        if not self.stopping:
            claimed = self._dispatch(now)
        busy = any(w.tasks for w in self.workers)
        if self.stopping and not busy:
            self._flush(time.time())
            return False
        if self.burst and not busy and not claimed and not self._outcomes:
            if not self.store.has_runnable(self.queues, time.time()):
                self.stopping = True
                return False
        self._wait(claimed, busy)
        return True

    def _wait(self, claimed: int, busy: bool) -> None:
        """Sleep until a worker reports, a worker dies, a submitter pokes us, or a deadline."""
        now = time.time()
        if claimed:
            self._idle_wait = 0.001
        timeout = 0.5  # with every worker busy, results and deaths wake us anyway
        if not self.stopping and any(not w.tasks for w in self.workers):
            timeout = self._idle_wait
            if not claimed:
                self._idle_wait = min(self._idle_wait * 2, self.settings.idle_poll_seconds)
        timeout = min(timeout, max(0.0, self._next_maintenance - now))
        for w in self.workers:
            task, started = self._current_task(w)
            if task is not None and task.timeout:
                timeout = min(timeout, max(0.0, started + task.timeout - now) + 0.001)
            if w.kill_deadline is not None:
                timeout = min(timeout, max(0.0, w.kill_deadline - now))
        if self.stopping:
            timeout = min(timeout, 0.05)
        if self._outcomes:
            timeout = 0.0
        store_fd = self.store.wakeup_fileno()
        if store_fd != self._store_fd:
            if self._store_fd is not None:
                self._selector.unregister(self._store_fd)
            if store_fd is not None:
                self._selector.register(store_fd, selectors.EVENT_READ, ("store", None))
            self._store_fd = store_fd
        for key, _ in self._selector.select(timeout):
            kind, w = key.data
            if kind == "worker":
                self._read_worker(w)
            elif kind == "wake":
                assert self._presence is not None
                self._presence.drain()
                self._idle_wait = 0.001
            elif kind == "store":
                self.store.drain_wakeups()
                self._idle_wait = 0.001
            # "sentinel": a worker died; the next tick reaps it.

    def _read_worker(self, w: _Worker) -> None:
        # Connection.poll() builds a selector per call; one poll object per worker is cheap.
        try:
            while w.poller.poll(0):
                self._handle_message(w, w.conn.recv())
        except (EOFError, OSError):
            pass

    def _handle_message(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "done":  # results the worker could not write itself: we write them
            pid = w.pid
            for result in msg[1]:
                job_id, _, ok, payload, output, started, finished = result
                failure = None if ok else (payload.get("type"), payload.get("message"))
                if self._account(w, job_id, output, started, finished, failure):
                    self._outcomes.append(outcome_of(result, pid))
        elif kind == "finished":  # written by the worker itself
            _, results, rejected = msg
            for job_id, _, _, failure, output, started, finished in results:
                self._account(w, job_id, output, started, finished, failure)
            for job_id in rejected:
                log.warning("job %d: result dropped, the job was taken back from this supervisor", job_id)
        elif kind == "progress":
            _, job_id, attempt, fraction, message = msg
            self._progress[job_id] = (job_id, attempt, fraction, message)
        elif kind == "unstarted":
            for job_id in msg[1]:
                task = w.tasks.pop(job_id, None)
                if task is not None:
                    self._outcomes.append(Outcome(job_id, task.attempts, "released", worker=w.pid))
        elif kind == "retire":
            w.retiring = True
            log.info("worker %d retires: %s", w.pid, msg[1])

    def _account(
        self, w: _Worker, job_id: int, output: str | None, started: float, finished: float, failure: tuple[str, str] | None
    ) -> bool:
        """Book a job a worker reports finished; False when it is no longer the worker's."""
        if w.tasks.pop(job_id, None) is None:
            return False
        self._jobs_done += 1
        duration = finished - started
        self._avg_job_seconds = duration if self._jobs_done == 1 else 0.9 * self._avg_job_seconds + 0.1 * duration
        self._log_output(job_id, output)
        if failure is not None:
            log.warning("job %d failed: %s: %s", job_id, failure[0], failure[1])
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("job %d succeeded in %.3fs", job_id, duration)
        return True

    @staticmethod
    def _log_output(job_id: int, output: str | None) -> None:
        if output and log.isEnabledFor(logging.INFO):
            for line in output.splitlines():
                log.info("[job %d] %s", job_id, line)

    # -- workers --------------------------------------------------------------------
    def _start_worker(self, slot: int) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        capture_path = os.path.join(self._capture_dir, f"worker-{slot}.out")
        config = WorkerConfig(
            supervisor_pid=os.getpid(),
            capture_path=capture_path,
            max_output_bytes=self.settings.max_output_bytes,
            max_payload_bytes=self.settings.max_payload_bytes,
            max_jobs=self.max_jobs_per_worker,
            max_memory_mb=self.max_memory_per_worker,
            sys_path=[os.getcwd(), *[p for p in sys.path if p]],
            inherited_fds=self._presence.fds() if self._presence is not None and self._ctx.get_start_method() == "fork" else [],
            db_url=self.store.url,
            owner=self.id,
            busy_timeout_seconds=self.settings.busy_timeout_seconds,
        )
        for i in range(SLOT_SIZE):
            self._slots[slot * SLOT_SIZE + i] = 0
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, self._slots, slot, self._draining, config),
            name=f"jobq-worker-{slot}",
            daemon=True,
        )
        process.start()
        child_conn.close()
        self._selector.register(parent_conn.fileno(), selectors.EVENT_READ, ("worker", None))
        self._selector.register(process.sentinel, selectors.EVENT_READ, ("sentinel", None))
        worker = _Worker(process, parent_conn, slot, capture_path)
        self._selector.modify(parent_conn.fileno(), selectors.EVENT_READ, ("worker", worker))
        self._selector.modify(process.sentinel, selectors.EVENT_READ, ("sentinel", worker))
        self.workers = [w for w in self.workers if w.slot != slot] + [worker]
        self.workers.sort(key=lambda w: w.slot)
        log.debug("worker %d started in slot %d", process.pid, slot)

    def _start_checkpointer(self) -> None:
        if not self.store.wants_checkpointer:
            return
        self._checkpointer = self._ctx.Process(
            target=checkpointer_main,
            args=(self.store.url, os.getpid(), CHECKPOINT_SECONDS),
            name="jobq-checkpointer",
            daemon=True,
        )
        self._checkpointer.start()

    def _reap_workers(self, now: float) -> None:
        for w in list(self.workers):
            if w.process.is_alive():
                continue
            self._read_worker(w)  # results it sent before dying still count
            w.process.join()
            exitcode = w.process.exitcode
            current = int(self._slots[w.slot * SLOT_SIZE + SLOT_JOB])
            for job_id, task in list(w.tasks.items()):
                if job_id == current:
                    self._outcomes.append(self._death_outcome(w, task, exitcode, now))
                else:
                    self._outcomes.append(Outcome(job_id, task.attempts, "released", worker=w.pid))
            w.tasks.clear()
            self._selector.unregister(w.conn.fileno())
            self._selector.unregister(w.process.sentinel)
            w.conn.close()
            if not (w.retiring and exitcode == 0) and w.kill_reason is None:
                log.warning("worker %d died (%s)", w.pid, _signal_name(exitcode))
            if self.stopping:
                self.workers = [x for x in self.workers if x is not w]
            else:
                self._start_worker(w.slot)

    def _death_outcome(self, w: _Worker, task: ClaimedJob, exitcode: int | None, now: float) -> Outcome:
        output = _read_job_output(
            w.capture_path, int(self._slots[w.slot * SLOT_SIZE + SLOT_OUTPUT_AT]), self.settings.max_output_bytes
        )
        self._log_output(task.id, output)
        if w.kill_reason is not None:
            kind, error, retriable = w.kill_reason
            log.warning("job %d %s: %s", task.id, kind, error["message"])
            return Outcome(
                task.id, task.attempts, kind, error=error, retriable=retriable, worker=w.pid, output=output, finished_at=now
            )
        error = {
            "type": "WorkerDied",
            "message": f"worker {w.pid} died while running the job: {_signal_name(exitcode)}",
            "traceback": "",
        }
        log.warning("job %d failed: %s", task.id, error["message"])
        return Outcome(task.id, task.attempts, "failed", error=error, worker=w.pid, output=output, finished_at=now)

    def _kill(self, w: _Worker, kind: str, error: dict[str, Any], retriable: bool, now: float) -> None:
        if w.kill_reason is not None:
            return
        w.kill_reason = (kind, error, retriable)
        w.kill_deadline = now + self.settings.kill_grace_seconds
        try:
            os.kill(w.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _current_task(self, w: _Worker) -> tuple[ClaimedJob | None, float]:
        base = w.slot * SLOT_SIZE
        job_id = int(self._slots[base + SLOT_JOB])
        task = w.tasks.get(job_id)
        if task is not None and int(self._slots[base + SLOT_ATTEMPT]) != task.attempts:
            task = None
        return task, self._slots[base + SLOT_STARTED]

    def _enforce_deadlines(self, now: float) -> None:
        for w in self.workers:
            if w.kill_deadline is not None and now >= w.kill_deadline and w.process.is_alive():
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                w.kill_deadline = None
                continue
            task, started = self._current_task(w)
            if task is not None and task.timeout and now - started > task.timeout:
                error = {"type": "JobTimeout", "message": f"job exceeded its timeout of {task.timeout:g}s", "traceback": ""}
                self._kill(w, "failed", error, True, now)
        if self._drain_deadline is not None and now >= self._drain_deadline:
            for w in self.workers:
                if w.tasks:
                    error = {"type": "Drained", "message": "supervisor stopped before the job finished", "traceback": ""}
                    self._kill(w, "released", error, False, now)

    # -- claiming and writing -------------------------------------------------------
    def _batch_size(self) -> int:
        if self._avg_job_seconds <= 0:
            return 1
        return max(1, min(MAX_BATCH, int(PREFETCH_SECONDS / self._avg_job_seconds)))

    def _dispatch(self, now: float) -> int:
        """Claim jobs for workers with room and send them. Short jobs go in batches of about
        PREFETCH_SECONDS of work, and a worker gets its next batch while it runs the current
        one; a long job goes alone to an idle worker, so none hoards work another could run."""
        batch = self._batch_size()
        ready = [
            w
            for w in self.workers
            if not w.retiring
            and w.kill_reason is None
            and (not w.tasks or (batch > 1 and len(w.tasks) <= batch))
            and w.process.is_alive()
        ]
        if not ready:
            return 0
        limits = {q: s.concurrency for q, s in self.settings.queues.items() if s.concurrency}
        claimed = self.store.claim(
            self.id, self.queues, batch * len(ready), now, now + self.settings.lease_seconds, queue_limits=limits or None
        )
        if not claimed:
            return 0
        ready.sort(key=lambda w: len(w.tasks))
        per_worker = -(-len(claimed) // len(ready))
        for i, w in enumerate(ready):
            chunk = claimed[i * per_worker : (i + 1) * per_worker]
            if not chunk:
                break
            for task in chunk:
                w.tasks[task.id] = task
            try:
                w.conn.send([(t.id, t.attempts, t.target, t.args_json, t.kwargs_json) for t in chunk])
            except (OSError, ValueError):
                pass  # the worker died; reaping releases its tasks
        return len(claimed)

    def _flush(self, now: float) -> None:
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            try:
                rejected = self.store.finish(self.id, outcomes, now)
            except StoreError:
                self._outcomes = outcomes + self._outcomes
                raise
            for job_id in rejected:
                log.warning("job %d: result dropped, the job was taken back from this supervisor", job_id)
        if self._progress:
            updates, self._progress = list(self._progress.values()), {}
            self.store.set_progress(self.id, updates)

    def _maintenance(self, now: float) -> None:
        self._next_maintenance = now + self.settings.heartbeat_seconds
        lease_until = now + self.settings.lease_seconds
        cancel_ids = set(self.store.heartbeat(self.id, now, lease_until))
        if cancel_ids:
            for w in self.workers:
                task, _ = self._current_task(w)
                if task is not None and task.id in cancel_ids:
                    error = {"type": "Cancelled", "message": "cancelled by request", "traceback": ""}
                    self._kill(w, "cancelled", error, False, now)
        self._sweep_dead_supervisors(now)
        self.store.requeue_lost(now, expired_before=now, reason="lease expired: its supervisor stopped renewing it")
        self.store.prune_supervisors(now - 2 * self.settings.lease_seconds)
        if not self.stopping:
            sync_due = self.store.enqueue_due_schedules(now, next_run_after)
            for job_id in sync_due:
                log.info("job %d enqueued by its schedule", job_id)
        if now >= self._next_purge:
            self._next_purge = now + 60
            purged = self.store.purge(now, ["succeeded", "failed", "cancelled"], None, self.settings.result_ttl)
            if purged:
                log.info("purged %d finished jobs past their result_ttl", purged)

    def _sweep_dead_supervisors(self, now: float) -> None:
        host = self.settings.host()
        supervisors = self.store.supervisors()
        if self._info is not None and not any(s.id == self.id for s in supervisors):
            # Pruned while we were frozen (SIGSTOP, a paused VM): be listed again.
            self._info.heartbeat_at = now
            self.store.register_supervisor(self._info)
        for sup in supervisors:
            if sup.id == self.id or sup.host != host:
                continue
            if is_dead(sup.lock_path):
                taken = self.store.requeue_lost(now, owner=sup.id, reason=f"supervisor {sup.id} (pid {sup.pid}) died")
                self.store.unregister_supervisor(sup.id)
                log.warning(
                    "supervisor %s (pid %d) is dead; took back %d jobs%s",
                    sup.id,
                    sup.pid,
                    len(taken),
                    f": {', '.join(map(str, taken))}" if taken else "",
                )
        if self._presence is not None:
            # Leftovers of supervisors that died before registering, or whose row is gone.
            self._presence.remove_dead_leftovers(keep={s.id for s in supervisors})

    # -- signals and shutdown -------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        old = {}
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

    def _handle_signals(self, now: float) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if not self.stopping:
                self.stopping = True
                self._draining.value = 1
                self._drain_deadline = now + self.grace
                log.info(
                    "supervisor %s draining (%s): up to %gs for running jobs", self.id, signal.Signals(signum).name, self.grace
                )
            elif signum == signal.SIGINT and not self.stop_now:
                self.stop_now = True
                self._drain_deadline = now
                log.info("supervisor %s: second interrupt, ending running jobs now", self.id)

    def _shutdown(self) -> None:
        now = time.time()
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
        # Anything still held (an error path) goes back to the queue, attempt not counted.
        for w in self.workers:
            self._read_worker(w)
            for job_id, task in w.tasks.items():
                self._outcomes.append(Outcome(job_id, task.attempts, "released", worker=w.pid))
            w.tasks.clear()
        try:
            self._flush(now)
            self.store.unregister_supervisor(self.id)
        except StoreError as exc:
            log.error("supervisor %s: could not write its last results: %s", self.id, exc)
        if self._checkpointer is not None:
            self._checkpointer.terminate()
            self._checkpointer.join(5)
        self._selector.close()
        if self._presence is not None:
            self._presence.release()  # the lock, the socket and the workers' output files


def _read_job_output(path: str, start: int, max_bytes: int) -> str:
    """What a dead worker's job printed: its capture file from ``start`` on."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        return read_range(fd, start, os.fstat(fd).st_size, max_bytes)
    finally:
        os.close(fd)


def _run_in_background(supervisor: Supervisor) -> None:
    set_process_name("jobq-supervisor")
    code = 1
    try:
        code = supervisor.run()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
