"""Reliability (issue 3): hard timeouts, retries, graceful drain, cancellation, worker
recycling and many supervisors on one file. Real supervisors, real processes, real signals."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

import jobq
from tests.conftest import failure_of, run_cli, states, wait_for


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def started(side: Path, token: str) -> bool:
    return any(line.split()[0] == token for line in lines(side))


# -- hard timeouts ---------------------------------------------------------------------------
def test_timeout_ends_a_sleeping_job_and_the_next_job_runs(queue: jobq.Queue, processes) -> None:
    slow = queue.submit("tests.tasks:sleep", args=(60,), timeout=1)
    after = queue.submit("tests.tasks:add", args=(1, 2))
    sup = processes.supervisor(queue.path, "-c", "1")
    # 60 s of sleep ended after 1 s (plus the kill grace at worst): well inside 20 s.
    err = failure_of(slow, timeout=20)
    assert err.error_type == "JobTimeout"
    assert re.search(r"\b1(\.0+)?\s*s", err.message), err.message
    assert slow.state == "failed"
    assert after.join(timeout=30) == 3
    assert sup.poll() is None


# -- retries ---------------------------------------------------------------------------------
def test_flaky_job_succeeds_on_its_third_attempt(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    job = queue.submit("tests.tasks:flaky", args=(str(calls), 2), retries=2, retry_backoff=0.1)
    processes.supervisor(queue.path, "-c", "1")
    assert job.join(timeout=60) == 3
    rec = queue.record(job.id)
    assert rec.state == "succeeded"
    assert rec.attempts == 3
    assert len(lines(calls)) == 3
    assert [e["type"] for e in rec.errors] == ["RuntimeError", "RuntimeError"]
    assert "flaky failure 1" in rec.errors[0]["message"]
    assert "flaky failure 2" in rec.errors[1]["message"]


def test_retries_run_out_and_every_error_is_kept(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    job = queue.submit("tests.tasks:flaky", args=(str(calls), 5), retries=1, retry_backoff=0.1)
    processes.supervisor(queue.path, "-c", "1")
    err = failure_of(job)
    assert err.error_type == "RuntimeError"
    assert "flaky failure 2" in err.message  # the last error
    rec = queue.record(job.id)
    assert rec.state == "failed"
    assert rec.attempts == 2
    assert len(lines(calls)) == 2
    assert [e["message"] for e in rec.errors] == ["flaky failure 1", "flaky failure 2"]
    shown = run_cli(queue.path, "status", str(job.id))
    assert shown.returncode == 0, shown.stderr
    assert "flaky failure 1" in shown.stdout and "flaky failure 2" in shown.stdout


def test_crash_and_timeout_each_count_as_an_attempt(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    crashes, hangs = tmp_path / "crashes.txt", tmp_path / "hangs.txt"
    crash = queue.submit("tests.tasks:crash_first", args=(str(crashes), 1), retries=1, retry_backoff=0.1)
    hang = queue.submit("tests.tasks:hang_first", args=(str(hangs), 1, 60), retries=1, retry_backoff=0.1, timeout=1)
    always = queue.submit("tests.tasks:kill_self", retries=1, retry_backoff=0.1)
    processes.supervisor(queue.path, "-c", "2")

    assert crash.join(timeout=60) == 2
    rec = queue.record(crash.id)
    assert rec.attempts == 2
    assert [e["type"] for e in rec.errors] == ["WorkerDied"]

    assert hang.join(timeout=60) == 2
    rec = queue.record(hang.id)
    assert rec.attempts == 2
    assert [e["type"] for e in rec.errors] == ["JobTimeout"]

    err = failure_of(always)
    assert err.error_type == "WorkerDied" and "SIGKILL" in err.message
    rec = queue.record(always.id)
    assert rec.attempts == 2
    assert [e["type"] for e in rec.errors] == ["WorkerDied", "WorkerDied"]


# -- graceful drain --------------------------------------------------------------------------
def test_sigterm_lets_the_running_job_finish(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    sup = processes.supervisor(queue.path, "-c", "1")
    job = queue.submit("tests.tasks:record_then_sleep", args=(str(side), "run", 3))
    wait_for(lambda: started(side, "run"), 60, what="the job to start")
    waiting = queue.submit("tests.tasks:add", args=(1, 1))
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=60) == 0
    assert job.state == "succeeded"
    assert job.result == "run"
    # Draining stops claiming: the job submitted meanwhile is still queued, never started.
    assert waiting.state == "queued"
    assert waiting.attempts == 0
    assert queue.status()["counts"]["running"] == 0


def test_sigterm_past_grace_requeues_without_counting(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    sup = processes.supervisor(queue.path, "-c", "1", "--grace", "1")
    job = queue.submit("tests.tasks:record_then_sleep", args=(str(side), "long", 30))
    wait_for(lambda: started(side, "long"), 60, what="the job to start")
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=25) == 0  # grace 1 s + kill grace, long before the 30 s job ends
    rec = queue.record(job.id)
    assert rec.state == "queued"
    assert rec.attempts == 0
    assert queue.status()["counts"]["running"] == 0


def test_second_sigint_ends_everything_at_once(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    sup = processes.supervisor(queue.path, "-c", "1")  # default grace: 30 s
    job = queue.submit("tests.tasks:record_then_sleep", args=(str(side), "long", 30))
    wait_for(lambda: started(side, "long"), 60, what="the job to start")
    sup.send_signal(signal.SIGINT)
    log = Path(sup.log_path)
    # A second signal coalesces with the first unless the first was handled: wait for the log.
    wait_for(lambda: "drain" in log.read_text().lower(), 20, what="the supervisor to start draining")
    sup.send_signal(signal.SIGINT)
    assert sup.wait(timeout=20) == 0  # not the 30 s grace
    rec = queue.record(job.id)
    assert rec.state == "queued"
    assert rec.attempts == 0
    assert queue.status()["counts"]["running"] == 0


def test_worker_stop_waits_for_the_supervisor(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    sup = processes.supervisor(queue.path, "-c", "1")
    job = queue.submit("tests.tasks:record_then_sleep", args=(str(side), "run", 2))
    wait_for(lambda: started(side, "run"), 60, what="the job to start")
    out = run_cli(queue.path, "worker", "stop", timeout=90)
    assert out.returncode == 0, out.stderr
    # `worker stop` returned only once the supervisor was gone.
    assert sup.poll() is not None
    assert sup.returncode == 0
    assert job.state == "succeeded"
    assert queue.status()["counts"]["running"] == 0
    assert queue.live_supervisors() == []


# -- cancellation and retry ------------------------------------------------------------------
def test_cancel_queued_jobs_at_once(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    a = queue.submit("tests.tasks:record", args=(str(side), "a"))
    b = queue.submit("tests.tasks:record", args=(str(side), "b"))
    c = queue.submit("tests.tasks:record", args=(str(side), "c"))
    assert a.cancel() == "cancelled"
    assert a.state == "cancelled"
    out = run_cli(queue.path, "cancel", str(b.id))
    assert out.returncode == 0, out.stderr
    assert b.state == "cancelled"
    sup = processes.supervisor(queue.path, "-c", "1", "--burst")
    assert c.join(timeout=60) == "c"
    assert sup.wait(timeout=60) == 0
    assert lines(side) == ["c"]
    err = failure_of(a, timeout=5)
    assert err.state == "cancelled"
    # `jobq retry` brings a cancelled job back too.
    out = run_cli(queue.path, "retry", str(a.id))
    assert out.returncode == 0, out.stderr
    assert a.state == "queued"
    processes.supervisor(queue.path, "-c", "1", "--burst")
    assert a.join(timeout=60) == "a"
    assert sorted(lines(side)) == ["a", "c"]
    assert b.state == "cancelled"


def test_cancel_running_job_ends_it(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    sup = processes.supervisor(queue.path, "-c", "1")
    job = queue.submit("tests.tasks:record_then_sleep", args=(str(side), "long", 60))
    wait_for(lambda: started(side, "long"), 60, what="the job to start")
    job.cancel()
    wait_for(lambda: job.state == "cancelled", 20, what="the running job to be cancelled")
    err = failure_of(job, timeout=5)
    assert err.state == "cancelled"
    # Its worker was ended and replaced: the next job runs.
    assert queue.submit("tests.tasks:add", args=(5, 5)).join(timeout=30) == 10
    assert sup.poll() is None


def test_retry_requeues_failed_jobs(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    processes.supervisor(queue.path, "-c", "2")
    one = queue.submit("tests.tasks:flaky", args=(str(tmp_path / "one.txt"), 1))
    assert failure_of(one).error_type == "RuntimeError"
    out = run_cli(queue.path, "retry", str(one.id))
    assert out.returncode == 0, out.stderr
    assert one.join(timeout=60) == 2

    many = [queue.submit("tests.tasks:flaky", args=(str(tmp_path / f"f{i}.txt"), 1)) for i in range(3)]
    for job in many:
        failure_of(job)
    out = run_cli(queue.path, "retry", "--failed")
    assert out.returncode == 0, out.stderr
    assert [job.join(timeout=60) for job in many] == [2, 2, 2]
    assert states(queue) == {"succeeded": 4}


# -- worker recycling ------------------------------------------------------------------------
def test_max_jobs_per_worker_recycles_workers(queue: jobq.Queue, processes) -> None:
    jobs = queue.submit_many("tests.tasks:pid", [() for _ in range(50)])
    sup = processes.supervisor(queue.path, "-c", "2", "--burst", "--max-jobs-per-worker", "5")
    assert sup.wait(timeout=90) == 0
    pids = [job.result for job in jobs]
    assert all(isinstance(p, int) for p in pids)
    assert len(set(pids)) >= 10
    assert max(pids.count(p) for p in set(pids)) <= 5
    assert states(queue) == {"succeeded": 50}


def test_max_memory_per_worker_recycles_leaky_workers(queue: jobq.Queue, processes) -> None:
    jobs = queue.submit_many("tests.tasks:leak", [(50,) for _ in range(8)])
    sup = processes.supervisor(queue.path, "-c", "1", "--burst", "--max-memory-per-worker", "120")
    assert sup.wait(timeout=90) == 0
    assert states(queue) == {"succeeded": 8}
    pids = [job.result for job in jobs]
    # Each worker holds 50 MB more per job: no worker can run more than 3 of them under 120 MB.
    assert len(set(pids)) >= 3
    assert max(pids.count(p) for p in set(pids)) <= 3


# -- many supervisors, one file --------------------------------------------------------------
@pytest.mark.timeout(300)
def test_four_supervisors_run_20000_jobs_exactly_once(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    n = 20_000
    sups = [processes.supervisor(queue.path, "-c", "2") for _ in range(4)]
    wait_for(lambda: len(queue.live_supervisors()) == 4, 60, what="four supervisors to register")
    queue.submit_many("tests.tasks:record", [(str(side), i) for i in range(n)])
    wait_for(lambda: states(queue) == {"succeeded": n}, 240, interval=0.5, what=f"{n} jobs to succeed")

    tokens = lines(side)
    assert len(tokens) == n, f"{len(tokens) - len(set(tokens))} duplicate executions"
    assert sorted(map(int, tokens)) == list(range(n))
    for sup in sups:
        sup.send_signal(signal.SIGTERM)
    for sup in sups:
        assert sup.wait(timeout=60) == 0
    for sup in sups:
        text = Path(sup.log_path).read_text()
        assert "database is locked" not in text
        assert "Traceback" not in text
