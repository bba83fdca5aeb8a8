"""Running a supervisor in a background process of the program that embeds it:
``with Supervisor(q):``, ``async with Supervisor(q):``, ``start()`` / ``stop()``."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from typing import Any

from ..core.config import Settings
from ..worker.osproc import set_process_name


class InBackground:
    """The embedding half of :class:`~jobq.supervisor.Supervisor` (a mixin): its loop runs in
    a child process, drained with SIGTERM on exit."""

    start_method: str | None
    id: str
    grace: float
    settings: Settings
    _background: Any

    def run(self) -> int:  # provided by the supervisor
        raise NotImplementedError

    def start(self) -> Any:
        """Run this supervisor in a background process; returns self."""
        if self._background is not None:
            raise RuntimeError("supervisor already started")
        ctx: Any = multiprocessing.get_context(self.start_method)
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
        return int(proc.exitcode) if proc.exitcode is not None else None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Any:
        """``async with Supervisor(q):`` starts it in a background process without blocking the
        event loop (the fork and the drain run on a thread), for an async service's lifespan."""
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)


def _run_in_background(supervisor: InBackground) -> None:
    set_process_name("jobq-supervisor")
    code = 1
    try:
        code = supervisor.run()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
