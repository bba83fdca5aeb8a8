"""The steps of scripts/bench.py, bench_pool.py and bench_pg.py under a time limit: each step (a
peer's run, or one of jobq's rows beside them) runs in a forked process of its own, so that a
peer that hangs (a ``multiprocessing.Pool`` that never terminates, an RQ worker or a Huey
consumer stuck under load) is reported under its key, "timed out after N s", and the rest of
the benchmark goes on. Every process the step started is ended by pid, its own process groups
included, and nothing else.

The step's figures are measured inside that process exactly as they were in the benchmark's own
(the timers run around the same calls); they come back through a pipe.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from bench_common import FORK, Report, Sizes, _all_children, _signal, say, shielded, stop_on_sigterm

GRACE = 15.0  # seconds a step that ran out of time has to unwind (its own cleanups) before SIGKILL
_TIMEOUT, _DIED = object(), object()


def _wait_stopped(pid: int, timeout: float = 1.0) -> None:
    """Until ``pid`` is stopped (or ended): a SIGSTOP takes effect when it is next scheduled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("T", "t", "Z", "X"):
                    return
        except (OSError, IndexError):
            return
        time.sleep(0.001)


def kill_tree(root: int) -> list[int]:
    """SIGKILL ``root`` and every process under it, whatever their process group or session;
    the pids signalled. Each is stopped (SIGSTOP) before its children are listed: a stopped
    process neither starts nor reaps any, so no pid read here can be another's by the time it
    is killed. ``root`` must be a child of this process that has not been waited for."""
    seen: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        _signal(pid, signal.SIGSTOP, group=False)
        _wait_stopped(pid)
        seen.append(pid)
        todo.extend(_all_children(pid))
    for pid in seen:
        _signal(pid, signal.SIGKILL, group=False)
    return seen


def _step_process(conn: Connection, fn: Callable[[], None], fig: dict[str, float]) -> None:
    """In the step's process: run ``fn``, send back (``fig``, the error or None), then wait to
    be ended by the benchmark (its children still under it, for :func:`kill_tree`)."""
    os.setsid()  # a group of its own: the processes it starts are signalled with it
    stop_on_sigterm()  # a SIGTERM unwinds ``fn``: its `finally` blocks end its peers
    error = None
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - reported by the benchmark, a SIGTERM's SystemExit included
        error = f"{type(exc).__name__}: {exc}"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.send((dict(fig), error))
        conn.recv()  # never answered: the benchmark ends this process once it has the report
    except (EOFError, OSError):
        pass
    os._exit(0)


def _receive(conn: Connection, proc: Any, seconds: float) -> Any:
    """The step's report, or _TIMEOUT after ``seconds``, or _DIED if it ended without one."""
    ready = wait([conn, proc.sentinel], timeout=max(0.0, seconds))
    if conn in ready:
        try:
            return conn.recv()
        except (EOFError, OSError):
            return _DIED
    return _DIED if ready else _TIMEOUT


def _waited_for(proc: Any) -> bool:
    """Whether ``proc`` has been waited for (its pid may be another's by now); it is not reaped
    here, unlike ``proc.exitcode`` and ``proc.is_alive()`` do."""
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def _running(proc: Any) -> bool:
    """Whether ``proc`` has not ended (without reaping it)."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def _end_step(proc: Any, conn: Connection, reported: bool, grace: float) -> Any:
    """End the step's process and every process under it; one that has not reported yet (it ran
    out of time, or the benchmark is stopping) first gets a SIGTERM and ``grace`` seconds to
    unwind, so that its peers' cleanups (RQ's keys, PostgreSQL schemas) run: its report then
    (the figures it had so far), else None."""
    late = None
    with shielded():
        if not reported and _running(proc):
            _signal(proc.pid, signal.SIGTERM, group=False)
            late = _receive(conn, proc, grace)
        if not _waited_for(proc):  # its pid, and its children's, are still its own
            kill_tree(proc.pid)
            try:  # its group (it leads one), should any of it have left its tree
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.join(10)
        conn.close()
    return None if late is _TIMEOUT or late is _DIED else late


def run_limited(fn: Callable[[], None], fig: dict[str, float], limit: float, grace: float = GRACE) -> str | None:
    """Run ``fn`` in a forked process for at most ``limit`` seconds; what it put in ``fig``
    comes back into ``fig`` (what it had when it ran out of time too, as when a peer fails half
    way). None when it returned, else why not (its exception, or "timed out after N s");
    either way every process it started has been ended when this returns."""
    here, there = FORK.Pipe()
    proc = FORK.Process(target=_step_process, args=(there, fn, fig), name="bench-step")
    got: Any = _DIED
    proc.start()
    try:
        there.close()
        got = _receive(here, proc, limit)
    finally:
        late = _end_step(proc, here, got is not _TIMEOUT and got is not _DIED, grace)
    if got is _TIMEOUT:
        if late is not None:
            fig.update(late[0])
        return f"timed out after {limit:g} s"
    if got is _DIED:
        return f"its process ended without a report (exit code {proc.exitcode})"
    figures, error = got
    fig.update(figures)
    return error


def stepper(
    rep: Report, r: int, s: Sizes, fig: dict[str, float], grace: float = GRACE
) -> Callable[[str, str, Callable[[], None]], None]:
    """``step(key, what, fn)`` for run ``r``: says what runs and runs ``fn`` (which puts its
    figures in ``fig``) under the time limit ``s.step_seconds``; a broken or hung peer is
    reported under ``key`` in ``rep.errors`` while the others still run."""

    def step(key: str, what: str, fn: Callable[[], None]) -> None:
        say(f"  run {r + 1}/{s.repeat}: {what}")
        error = run_limited(fn, fig, s.step_seconds, grace)
        if error is not None:
            rep.errors[key] = error
            say(f"  {what} FAILED: {error}")

    return step
