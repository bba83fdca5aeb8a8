"""The supervisor's loop driven in-process through ``tick(now)``: timeouts and kill escalation,
drain and grace, a second interrupt, a dead worker's accounting, a wall-clock step. The
workers are real forked processes; only the supervisor's monotonic time is injected, so
none of these waits for a timeout or a grace period to pass."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import jobq
from jobq.core.models import OutcomeKind
from tests.conftest import states

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sup(queue: jobq.Queue) -> Iterator[jobq.Supervisor]:
    supervisor = jobq.Supervisor(queue, concurrency=1, grace=5)
    supervisor.open()
    try:
        yield supervisor
    finally:
        pids = [w.pid for w in supervisor.pool.workers] if supervisor.pool else []
        supervisor.close()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def tick_until(sup: jobq.Supervisor, cond: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Tick at the real monotonic time until ``cond()`` holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        sup.tick(time.monotonic())
        sup.wait(0.01)


def running_task(sup: jobq.Supervisor) -> tuple[object, float]:
    assert sup.pool is not None
    return sup.pool.current(sup.pool.workers[0])


def test_a_timeout_sends_the_stop_signal_then_sigkill_after_the_kill_grace(sup: jobq.Supervisor, queue: jobq.Queue) -> None:
    job = queue.submit("tests.core_tasks:ignore_term_then_sleep", args=(60,), timeout=5)
    tick_until(sup, lambda: running_task(sup)[0] is not None, "the job to start")
    _, started = running_task(sup)
    worker = sup.pool.workers[0]
    time.sleep(0.2)  # let the job ignore the stop signal (SIGUSR1) and SIGTERM
    sup.tick(started + 5.5)
    assert worker.kill is not None and worker.kill.kind == OutcomeKind.FAILED
    assert worker.kill.error.type == "JobTimeout"
    time.sleep(0.2)
    assert worker.process.is_alive()  # the stop signal was ignored; the kill grace has not passed
    sup.tick(started + 5.5 + sup.settings.kill_grace_seconds + 0.1)
    tick_until(sup, lambda: job.state == "failed", "the job to be failed")
    record = job.refresh()
    assert record.error["type"] == "JobTimeout" and record.attempts == 1
    assert sup.pool.workers[0].pid != worker.pid  # a new worker took the slot


def test_drain_waits_for_the_grace_then_releases_the_job_without_counting_it(
    sup: jobq.Supervisor, queue: jobq.Queue, tmp_path: Path
) -> None:
    started_file, release = tmp_path / "started", tmp_path / "release"
    job = queue.submit("tests.core_tasks:touch_then_wait_for", args=(str(started_file), str(release)))
    tick_until(sup, started_file.exists, "the job to start")
    now = time.monotonic()
    sup.signal_received(signal.SIGTERM)
    assert sup.tick(now)
    assert sup.stopping and sup.pool.draining.value == 1
    assert sup.tick(now + 4.9)
    assert sup.pool.workers[0].kill is None  # still inside the grace
    sup.tick(now + 5.1)
    worker = sup.pool.workers[0]
    assert worker.kill is not None and worker.kill.kind == OutcomeKind.RELEASED
    deadline = time.monotonic() + 20
    while sup.tick(time.monotonic()):
        assert time.monotonic() < deadline, "the supervisor did not finish draining"
        sup.wait(0.01)
    record = job.refresh()
    assert (record.state, record.attempts) == ("queued", 0)


def test_a_second_interrupt_ends_running_jobs_at_once(sup: jobq.Supervisor, queue: jobq.Queue, tmp_path: Path) -> None:
    started_file, release = tmp_path / "started", tmp_path / "release"
    job = queue.submit("tests.core_tasks:touch_then_wait_for", args=(str(started_file), str(release)))
    tick_until(sup, started_file.exists, "the job to start")
    now = time.monotonic()
    sup.signal_received(signal.SIGINT)
    sup.tick(now)
    assert sup.stopping and not sup.stop_now and sup.pool.workers[0].kill is None
    sup.signal_received(signal.SIGINT)
    sup.tick(now + 0.01)
    assert sup.stop_now
    assert sup.pool.workers[0].kill is not None and sup.pool.workers[0].kill.kind == OutcomeKind.RELEASED
    deadline = time.monotonic() + 20
    while sup.tick(time.monotonic()):
        assert time.monotonic() < deadline
        sup.wait(0.01)
    assert job.refresh().state == "queued"


def test_a_killed_worker_fails_its_job_alone_naming_the_signal_and_is_replaced(
    sup: jobq.Supervisor, queue: jobq.Queue, tmp_path: Path
) -> None:
    started_file, release = tmp_path / "started", tmp_path / "release"
    job = queue.submit("tests.core_tasks:touch_then_wait_for", args=(str(started_file), str(release)))
    after = queue.submit("tests.core_tasks:noop", args=(7,))
    tick_until(sup, started_file.exists, "the job to start")
    victim = sup.pool.workers[0].pid
    os.kill(victim, signal.SIGKILL)
    tick_until(sup, lambda: job.state == "failed", "the killed worker's job to fail")
    error = job.refresh().error
    assert error["type"] == "WorkerDied" and "SIGKILL" in error["message"] and str(victim) in error["message"]
    tick_until(sup, lambda: after.state == "succeeded", "the next job to run on the new worker")
    assert sup.pool.workers[0].pid != victim
    assert states(queue) == {"failed": 1, "succeeded": 1}


def test_a_wall_clock_step_does_not_time_a_job_out(
    sup: jobq.Supervisor, queue: jobq.Queue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started_file, release = tmp_path / "started", tmp_path / "release"
    job = queue.submit("tests.core_tasks:touch_then_wait_for", args=(str(started_file), str(release)), timeout=30)
    tick_until(sup, started_file.exists, "the job to start")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # the clock steps an hour ahead
    for _ in range(5):
        sup.tick(time.monotonic())
        sup.wait(0.01)
    assert sup.pool.workers[0].kill is None
    release.touch()
    tick_until(sup, lambda: job.state == "succeeded", "the job to finish")
    assert job.join(timeout=5) == "released"
