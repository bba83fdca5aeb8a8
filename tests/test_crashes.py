"""Crash handling (issue 2): real supervisors, real worker processes, real signals.

A worker that dies mid-job fails that job naming how it died and is replaced; a SIGKILLed
supervisor leaves no job stuck and the next supervisor takes its jobs back at once (through
the lock file, not the 30 s lease); two supervisors on one file never run a job twice.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import jobq
from tests.conftest import failure_of, states, wait_for


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer exists (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def test_job_that_sigkills_its_worker_fails_alone(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    others = [queue.submit("tests.tasks:pid") for _ in range(10)]
    killer = queue.submit("tests.tasks:kill_self")
    others += [queue.submit("tests.tasks:pid") for _ in range(10)]
    sup = processes.supervisor(queue.path, "-c", "2")

    err = failure_of(killer)
    assert err.error_type == "WorkerDied"
    assert "SIGKILL" in err.message
    assert queue.get(killer.id).state == "failed"
    dead_pid = queue.record(killer.id).worker
    assert dead_pid is not None and str(dead_pid) in err.message

    results = [job.join(timeout=60) for job in others]
    assert all(isinstance(r, int) for r in results)
    assert states(queue) == {"succeeded": 20, "failed": 1}
    assert sup.poll() is None, "the supervisor must survive a worker's death"

    # The dead worker was replaced: two jobs now run at the same time on two live workers,
    # neither of them the dead one.
    side = tmp_path / "side.txt"
    pair = [queue.submit("tests.tasks:record_pid_then_sleep", args=(str(side), f"p{i}", 1.5)) for i in range(2)]
    wait_for(lambda: len(lines(side)) == 2, 60, what="both workers to run a job at once")
    pids = {int(line.split()[1]) for line in lines(side)}
    assert len(pids) == 2 and dead_pid not in pids
    for job in pair:
        assert job.join(timeout=60).startswith("p")
    assert sup.poll() is None


def test_job_that_exits_hard_names_the_exit_code(queue: jobq.Queue, processes) -> None:
    bad = queue.submit("tests.tasks:exit_hard", args=(3,))
    after = queue.submit("tests.tasks:add", args=(2, 3))
    sup = processes.supervisor(queue.path, "-c", "1")
    err = failure_of(bad)
    assert err.error_type == "WorkerDied"
    assert "exit code 3" in err.message
    assert after.join(timeout=60) == 5
    assert sup.poll() is None


def test_sigkilled_worker_from_outside_fails_its_job_and_is_replaced(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    sup = processes.supervisor(queue.path, "-c", "1")
    worker_pid = queue.submit("tests.tasks:pid").join(timeout=60)
    side = tmp_path / "side.txt"
    long = queue.submit("tests.tasks:record_pid_then_sleep", args=(str(side), "long", 60))
    wait_for(lambda: lines(side), 60, what="the long job to start")
    assert lines(side) == [f"long {worker_pid}"]

    os.kill(worker_pid, signal.SIGKILL)
    err = failure_of(long, timeout=30)
    assert err.error_type == "WorkerDied"
    assert "SIGKILL" in err.message
    assert long.state == "failed"

    new_pid = queue.submit("tests.tasks:pid").join(timeout=60)
    assert new_pid != worker_pid
    assert queue.submit("tests.tasks:add", args=(40, 2)).join(timeout=60) == 42
    assert sup.poll() is None


@pytest.mark.timeout(120)
def test_sigkilled_supervisor_leaves_no_job_stuck(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    jobs = [queue.submit("tests.tasks:record_pid_then_sleep", args=(str(side), f"t{i}", 3)) for i in range(4)]
    first = processes.supervisor(queue.path, "-c", "2")
    wait_for(lambda: len(lines(side)) >= 2, 60, what="two long jobs to start")
    before = lines(side)
    running_tokens = {line.split()[0] for line in before}
    worker_pids = {int(line.split()[1]) for line in before}
    assert len(worker_pids) == 2

    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    # Its workers do not outlive it (they would run jobs the next supervisor takes back).
    wait_for(lambda: all(pid_gone(p) for p in worker_pids), 10, what="the dead supervisor's workers to exit")
    counts = states(queue)
    held = counts.get("running", 0) + counts.get("claimed", 0)
    assert held >= 2  # nobody has taken them back yet

    second = processes.supervisor(queue.path, "-c", "2", "--burst")
    # Taken back at once through the dead supervisor's lock, not after lease_seconds=30:
    # two rounds of 3 s jobs fit well inside 20 s.
    wait_for(lambda: states(queue) == {"succeeded": 4}, 20, what="every job to succeed after the restart")
    assert second.wait(timeout=60) == 0
    for i, job in enumerate(jobs):
        rec = queue.record(job.id)
        assert rec.state == "succeeded"
        assert rec.result == f"t{i}"
    # The interrupted jobs were requeued with their attempt counted, and ran again.
    for i, job in enumerate(jobs):
        token = f"t{i}"
        runs = [line for line in lines(side) if line.split()[0] == token]
        if token in running_tokens:
            assert queue.record(job.id).attempts == 2
            assert len(runs) == 2
        else:
            assert len(runs) == 1
    assert queue.status()["counts"]["running"] == 0


@pytest.mark.timeout(180)
def test_two_supervisors_run_each_job_exactly_once(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    sups = [processes.supervisor(queue.path, "-c", "2") for _ in range(2)]
    wait_for(lambda: len(queue.live_supervisors()) == 2, 60, what="both supervisors to register")
    jobs = queue.submit_many("tests.tasks:record", [(str(side), i) for i in range(500)])
    assert len(jobs) == 500
    wait_for(lambda: states(queue) == {"succeeded": 500}, 120, what="500 jobs to succeed")

    tokens = [int(t) for t in lines(side)]
    assert len(tokens) == 500, f"{len(tokens) - len(set(tokens))} duplicate executions"
    assert sorted(tokens) == list(range(500))
    for job, i in zip(jobs, range(500), strict=True):
        assert job.result == i
    owners = {rec.owner for rec in queue.list(state="succeeded", limit=1000)}
    assert len(owners) == 2, "both supervisors should have taken part"

    for sup in sups:
        sup.send_signal(signal.SIGTERM)
    for sup in sups:
        assert sup.wait(timeout=60) == 0
    log_text = "".join(Path(s.log_path).read_text() for s in sups)
    assert "database is locked" not in log_text
