"""A supervisor's worker processes: forking, reaping, ending them, their shared slots, and
the two pipes to each. Sends never block: a batch a worker's pipe cannot take at once
waits in that worker's outbox until the pipe is writable again."""

from __future__ import annotations

import logging
import os
import select
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ..core.models import ClaimedJob, JobError, OutcomeKind
from ..worker.capture import read_range
from ..worker.handoff import SLOT_ATTEMPT, SLOT_JOB, SLOT_OUTPUT_AT, SLOT_SIZE, SLOT_STARTED, withdraw
from ..worker.main import WorkerConfig, worker_main
from ..worker.messages import Report, Task, task_rows, tasks_for
from ..worker.osproc import STOP_SIGNAL

log = logging.getLogger("jobq.supervisor")


@dataclass
class KillOrder:
    """Why the supervisor ends a worker: the outcome its current job gets."""

    kind: OutcomeKind
    error: JobError
    retriable: bool


@dataclass
class WorkerProcess:
    """One worker: its process, pipes, slot and the jobs it holds."""

    process: Any
    tasks_out: Connection  # supervisor -> worker; written without blocking
    reports_in: Connection  # worker -> supervisor
    slot: int
    capture_path: str
    tasks: dict[int, ClaimedJob] = field(default_factory=dict)
    kill: KillOrder | None = None
    kill_deadline: float | None = None  # monotonic
    retiring: bool = False
    outbox: bytearray = field(default_factory=bytearray)
    poller: Any = None
    sent: int = 0  # tasks sent to the worker so far
    sent_as: dict[int, int] = field(default_factory=dict)  # job id -> its number among them

    def __post_init__(self) -> None:
        self.poller = select.poll()
        self.poller.register(self.reports_in.fileno(), select.POLLIN)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def idle(self) -> bool:
        return not self.tasks

    def hand(self, jobs: list[ClaimedJob]) -> None:
        """Send these claimed jobs to the worker, in order (they are its to take)."""
        for job in jobs:
            self.tasks[job.id] = job
            self.sent_as[job.id] = self.sent
            self.sent += 1
        if len(self.sent_as) > 4 * len(self.tasks) + 64:  # forget the jobs it is done with
            self.sent_as = {k: v for k, v in self.sent_as.items() if k in self.tasks}
        self.enqueue(tasks_for(jobs))
        self.flush()

    def enqueue(self, batch: list[Task] | None) -> None:
        """Queue a batch (None: stop) for the worker, in the framing ``Connection.recv`` reads."""
        payload = bytes(ForkingPickler.dumps(None if batch is None else task_rows(batch)))
        n = len(payload)
        header = struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!i", -1) + struct.pack("!Q", n)
        self.outbox += header + payload

    def flush(self) -> bool:
        """Write what the pipe takes now; True when the outbox is empty."""
        while self.outbox:
            try:
                written = os.write(self.tasks_out.fileno(), self.outbox)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self.outbox.clear()  # the worker is gone; reaping releases its tasks
                return True
            del self.outbox[:written]
        return True

    def reports(self) -> Iterator[Report]:
        """Every report waiting in the pipe now."""
        try:
            while self.poller.poll(0):
                yield self.reports_in.recv()
        except (EOFError, OSError):
            return


def signal_name(exitcode: int | None) -> str:
    """How a process ended, in words: ``signal SIGKILL`` or ``exit code 3``."""
    if exitcode is None:
        return "unknown cause"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class WorkerPool:
    """The worker processes of one supervisor."""

    def __init__(self, ctx: Any, size: int, capture_dir: str, config_for: Any) -> None:
        self.ctx = ctx
        self.size = size
        self.capture_dir = capture_dir
        self.config_for = config_for  # slot, capture path -> WorkerConfig
        self.slots = ctx.RawArray("d", SLOT_SIZE * size)
        self.locks = [ctx.Lock() for _ in range(size)]  # one per slot (jobq.worker.handoff)
        self.draining = ctx.RawValue("b", 0)
        self.workers: list[WorkerProcess] = []

    def start(self, slot: int) -> WorkerProcess:
        """Fork a worker into ``slot`` (replacing whatever was there)."""
        tasks_in, tasks_out = self.ctx.Pipe(duplex=False)
        reports_in, reports_out = self.ctx.Pipe(duplex=False)
        capture_path = os.path.join(self.capture_dir, f"worker-{slot}.out")
        config: WorkerConfig = self.config_for(slot, capture_path)
        for i in range(SLOT_SIZE):
            self.slots[slot * SLOT_SIZE + i] = 0
        self.locks[slot] = self.ctx.Lock()  # the dead worker may have held the old one
        process = self.ctx.Process(
            target=worker_main,
            args=(tasks_in, reports_out, self.slots, slot, self.locks[slot], self.draining, config),
            name=f"jobq-worker-{slot}",
            daemon=True,
        )
        process.start()
        tasks_in.close()
        reports_out.close()
        os.set_blocking(tasks_out.fileno(), False)
        worker = WorkerProcess(process, tasks_out, reports_in, slot, capture_path)
        self.workers = sorted([w for w in self.workers if w.slot != slot] + [worker], key=lambda w: w.slot)
        log.debug("worker %d started in slot %d", process.pid, slot)
        return worker

    def remove(self, worker: WorkerProcess) -> None:
        self.workers = [w for w in self.workers if w is not worker]

    # -- what each worker is doing ----------------------------------------------------
    def current(self, w: WorkerProcess) -> tuple[ClaimedJob | None, float]:
        """The job the worker runs now (None between jobs) and when it started (monotonic)."""
        base = w.slot * SLOT_SIZE
        task = w.tasks.get(int(self.slots[base + SLOT_JOB]))
        if task is not None and int(self.slots[base + SLOT_ATTEMPT]) != task.attempts:
            task = None
        return task, float(self.slots[base + SLOT_STARTED])

    def withdraw(self, w: WorkerProcess, job_id: int) -> ClaimedJob | None:
        """Take back a job sent to ``w`` that it has not started (it never will): the job, or
        None when it started already (or is not the worker's)."""
        sent_as = w.sent_as.get(job_id)
        if job_id not in w.tasks or sent_as is None:
            return None
        if not withdraw(self.slots, w.slot * SLOT_SIZE, self.locks[w.slot], job_id, sent_as):
            return None
        w.sent_as.pop(job_id, None)
        return w.tasks.pop(job_id)

    def current_job_id(self, w: WorkerProcess) -> int:
        return int(self.slots[w.slot * SLOT_SIZE + SLOT_JOB])

    def output_size(self, w: WorkerProcess) -> int:
        """How many bytes the worker's capture file holds (grows as its job prints)."""
        try:
            return os.stat(w.capture_path).st_size
        except OSError:
            return 0

    def output_of_current(self, w: WorkerProcess, max_bytes: int) -> str:
        """What the worker's current job printed so far (while it runs, or when it died)."""
        start = int(self.slots[w.slot * SLOT_SIZE + SLOT_OUTPUT_AT])
        try:
            fd = os.open(w.capture_path, os.O_RDONLY)
        except OSError:
            return ""
        try:
            return read_range(fd, start, os.fstat(fd).st_size, max_bytes)
        finally:
            os.close(fd)

    # -- ending workers ---------------------------------------------------------------
    def order_kill(self, w: WorkerProcess, order: KillOrder, now: float, grace_seconds: float) -> None:
        """End the worker's current job: STOP_SIGNAL (SIGUSR1) now, SIGKILL after
        ``grace_seconds``. Workers ignore SIGTERM: one sent to the process group is not theirs."""
        if w.kill is not None:
            return
        w.kill = order
        w.kill_deadline = now + grace_seconds
        try:
            os.kill(w.pid, STOP_SIGNAL)
        except ProcessLookupError:
            pass

    def escalate(self, now: float) -> None:
        """SIGKILL every worker whose kill grace has passed."""
        for w in self.workers:
            if w.kill_deadline is not None and now >= w.kill_deadline and w.process.is_alive():
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                w.kill_deadline = None

    def dead(self) -> list[WorkerProcess]:
        """Workers whose process has exited (not yet reaped)."""
        return [w for w in self.workers if not w.process.is_alive()]

    def stop_all(self, timeout_seconds: float) -> None:
        """Ask every worker to exit, then kill those that did not within the timeout."""
        for w in self.workers:
            # After what is already queued (a frame cut short would garble the pipe): a
            # draining worker gives unstarted tasks back before it reads the stop.
            w.enqueue(None)
            w.flush()
        deadline = time.monotonic() + timeout_seconds
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
