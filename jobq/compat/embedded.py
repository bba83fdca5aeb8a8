"""A supervisor embedded in a program (``jobq.Pool``, ``jobq.Executor``, ``jobq.Process``).

It runs in a child process of the program and gets SIGTERM when the program dies, however
it dies (Linux ``PR_SET_PDEATHSIG``): it then drains (running jobs finish, up to its grace)
and exits, and the jobs it had not started stay queued in the database for the next
supervisor. No orphan supervisor outlives its program.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

from ..runtime.supervisor import Supervisor
from ..worker.osproc import set_process_name

log = logging.getLogger("jobq.embedded")

_live: set[EmbeddedSupervisor] = set()
_live_lock = threading.Lock()


def _run(supervisor: Supervisor, parent_pid: int) -> None:
    set_process_name("jobq-embedded")
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the program died before we could ask
        return
    code = supervisor.run()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class EmbeddedSupervisor:
    """A :class:`Supervisor` of ``concurrency`` workers in a child process of this program.

    With ``keep_alive`` (the default) a thread starts another supervisor when this one dies
    other than by :meth:`stop` (SIGKILL, OOM): the new one takes back the dead one's jobs at
    once (its lock file is free) and runs the rest, so a pool outlives its supervisor."""

    def __init__(
        self, queue: Any, concurrency: int | None, queues: list[str] | None, keep_alive: bool = True, **options: Any
    ) -> None:
        self._args = (queue, concurrency, queues)
        self._options = options
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._launch()
        with _live_lock:
            _live.add(self)
        if keep_alive:
            threading.Thread(target=self._keep_alive, name="jobq-embedded-keeper", daemon=True).start()

    def _launch(self) -> None:
        self.supervisor = Supervisor(*self._args, **self._options)
        ctx: Any = multiprocessing.get_context(self.supervisor.start_method)
        self.process = ctx.Process(target=_run, args=(self.supervisor, os.getpid()), name=f"jobq-embedded-{self.supervisor.id}")
        self.process.start()
        log.debug("embedded supervisor %s started: pid %s", self.supervisor.id, self.process.pid)

    def _keep_alive(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                if self._stopping.is_set() or self.process.is_alive():
                    continue
                log.warning(
                    "embedded supervisor %s (pid %s) died (exit code %s); starting another",
                    self.supervisor.id,
                    self.process.pid,
                    self.process.exitcode,
                )
                self._launch()

    @property
    def id(self) -> str:
        return self.supervisor.id

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, now: bool = False, timeout: float | None = None) -> int | None:
        """Drain the supervisor (SIGTERM: running jobs finish) and wait for it; with ``now``,
        end its running jobs at once (they go back to the queue, or stay cancelled)."""
        self._stopping.set()
        with self._lock:
            proc = self.process
        if proc.is_alive():
            try:
                if now:  # a second SIGINT ends running jobs at once; signals apart, not merged
                    os.kill(proc.pid, signal.SIGINT)
                    proc.join(0.1)
                    if proc.is_alive():
                        os.kill(proc.pid, signal.SIGINT)
                else:
                    os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        s = self.supervisor.settings
        proc.join(timeout if timeout is not None else s.grace_seconds + s.kill_grace_seconds + 30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        with _live_lock:
            _live.discard(self)
        return proc.exitcode


@atexit.register
def _stop_all() -> None:
    """At exit, drain every embedded supervisor this program still runs."""
    with _live_lock:
        live = list(_live)
    for sup in live:
        try:
            sup.stop()
        except Exception as exc:  # noqa: BLE001 - exiting: report and go on with the rest
            log.warning("embedded supervisor %s did not stop cleanly: %s", sup.id, exc)
