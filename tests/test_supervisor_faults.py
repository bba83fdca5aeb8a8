"""Supervisors as real processes, in the situations that used to go wrong: a worker's pipe
full while it runs a job, a lock file that vanished, a queue cap set only in the database,
a worker that cannot write its results, and progress set just before a long wait."""

from __future__ import annotations

import json
import sqlite3
from itertools import combinations
from pathlib import Path

import pytest

import jobq
from tests.conftest import run_cli, states, wait_for

pytestmark = pytest.mark.timeout(120)


def heartbeat(q: jobq.Queue) -> float:
    sups = q.store.supervisors()
    return sups[0].heartbeat_at if sups else 0.0


def test_a_full_pipe_to_a_busy_worker_never_blocks_the_supervisor(
    queue: jobq.Queue, db_path: str, tmp_path: Path, processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQ_HEARTBEAT_SECONDS", "0.2")
    processes.supervisor(db_path, "-c", "1")
    # Many tiny jobs first: the supervisor learns they are short and sends batches ahead.
    queue.map("tests.core_tasks:noop", range(300)).join(timeout=60)
    started, release = tmp_path / "started", tmp_path / "release"
    blocker = queue.submit("tests.core_tasks:touch_then_wait_for", args=(str(started), str(release), 60))
    wait_for(started.exists, 30, what="the blocking job to start")
    # Then 20 jobs of ~900 KB each, claimed for the busy worker: one alone is far more than a
    # pipe holds (64 KB). The map commits them in batches and pokes the supervisor after each,
    # so it may claim one and find the pipe full before the next is committed: one is enough.
    heavy = queue.map("tests.core_tasks:size_of", ["x" * 900_000 for _ in range(20)])

    def held() -> int:
        counts = queue.group(heavy.id).counts()
        return counts.get("running", 0) + counts.get("claimed", 0)

    wait_for(lambda: held() >= 1, 30, what="a heavy job to be claimed")
    # The supervisor's loop goes on: heartbeats keep coming while the worker is busy.
    first = heartbeat(queue)
    wait_for(lambda: heartbeat(queue) > first + 0.5, 10, what="heartbeats while the pipe is full")
    release.touch()
    assert blocker.join(timeout=30) == "released"
    assert heavy.join(timeout=60) == [900_000] * 20


def test_a_missing_lock_file_alone_does_not_make_a_live_supervisor_dead(
    queue: jobq.Queue, db_path: str, tmp_path: Path, processes
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    job = queue.submit("tests.core_tasks:touch_then_wait_for", args=(str(started), str(release), 60))
    processes.supervisor(db_path, "-c", "1")
    wait_for(started.exists, 30, what="the job to start")
    (first,) = queue.store.supervisors()
    Path(first.lock_path).unlink()  # a cleaned /tmp, or another container's view
    second = processes.supervisor(db_path, "-c", "1", log_name="second.log")
    wait_for(lambda: len(queue.store.supervisors()) == 2, 30, what="the second supervisor")

    def second_swept() -> bool:
        # A second heartbeat comes a heartbeat after the first round of duties (and its sweep) ended.
        other = [s for s in queue.store.supervisors() if s.id != first.id]
        return bool(other) and other[0].heartbeat_at >= other[0].started_at + 1.0

    wait_for(second_swept, 30, what="the second supervisor to sweep")
    assert job.state == "running" and queue.record(job.id).owner == first.id
    release.touch()
    assert job.join(timeout=30) == "released"
    record = queue.record(job.id)
    assert (record.attempts, record.errors) == (1, [])
    assert "is dead" not in Path(second.log_path).read_text()


def test_a_queue_cap_set_in_the_database_holds_for_supervisors_without_config(
    queue: jobq.Queue, db_path: str, tmp_path: Path, processes
) -> None:
    result = run_cli(db_path, "queues", "limit", "serial", "1")
    assert result.returncode == 0, result.stderr
    bad = run_cli(db_path, "queues", "limit", "serial", "lots")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "concurrency" in bad.stderr
    side = tmp_path / "spans.txt"
    jobs = [queue.submit("tests.tasks:span", (str(side), f"s{i}", 0.3), queue="serial") for i in range(4)]
    for _ in range(2):
        processes.supervisor(db_path, "-c", "2")
    for job in jobs:
        job.join(timeout=60)
    spans = {}
    for line in side.read_text().splitlines():
        token, start, end = line.split()
        spans[token] = (float(start), float(end))
    for a, b in combinations(spans.values(), 2):
        assert a[1] <= b[0] or b[1] <= a[0], f"two 'serial' jobs ran at once: {a} {b}"
    listed = [json.loads(line) for line in run_cli(db_path, "queues", "--json").stdout.splitlines()]
    assert {"queue": "serial", "concurrency": 1, "paused": False} == {k: listed[0][k] for k in ("queue", "concurrency", "paused")}


def test_a_paused_queue_waits_and_resume_releases_it(queue: jobq.Queue, db_path: str, processes) -> None:
    assert run_cli(db_path, "queues", "pause", "slow").returncode == 0
    held = queue.submit("tests.core_tasks:noop", args=(1,), queue="slow")
    free = queue.submit("tests.core_tasks:noop", args=(2,), queue="fast")
    processes.supervisor(db_path, "-c", "1")
    assert free.join(timeout=30) == 2
    assert held.state == "queued"
    assert run_cli(db_path, "queues", "resume", "slow").returncode == 0
    assert held.join(timeout=30) == 1


def test_a_worker_that_cannot_write_its_results_hands_them_over_and_the_fallback_is_logged(
    queue: jobq.Queue, db_path: str, tmp_path: Path, processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQ_BUSY_TIMEOUT_SECONDS", "0.3")
    started, release = tmp_path / "started", tmp_path / "release"
    job = queue.submit("tests.core_tasks:touch_then_wait_for", args=(str(started), str(release), 60))
    sup = processes.supervisor(db_path, "-c", "1")
    wait_for(started.exists, 30, what="the job to start")
    locker = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the database past the busy timeout
    release.touch()
    log = Path(sup.log_path)
    try:
        wait_for(lambda: "could not write the results of jobs" in log.read_text(), 30, what="the fallback to be logged")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert job.join(timeout=30) == "released"
    line = next(x for x in log.read_text().splitlines() if "could not write the results of jobs" in x)
    assert f"jobs {job.id} " in line and "locked" in line


def test_the_latest_progress_reaches_the_store_while_the_job_runs_on(any_db: str, tmp_path: Path, processes) -> None:
    q = jobq.Queue(any_db)
    started, release = tmp_path / "started", tmp_path / "release"
    job = q.submit("tests.core_tasks:progress_then_wait", args=(str(started), str(release)))
    processes.supervisor(any_db, "-c", "1")
    wait_for(started.exists, 30, what="the job to start")
    try:
        wait_for(
            lambda: (q.record(job.id).progress, q.record(job.id).progress_message) == (0.5, "half way"),
            5,
            what="the latest progress while the job waits",
        )
        status = json.loads(run_cli(any_db, "status", str(job.id), "--json").stdout)
        assert (status["state"], status["progress"], status["progress_message"]) == ("running", 0.5, "half way")
    finally:
        release.touch()
    assert job.join(timeout=30) == "released"
    assert states(q) == {"succeeded": 1}


def test_a_burst_supervisor_leaves_a_paused_queue_waiting_and_exits(queue: jobq.Queue, db_path: str, processes) -> None:
    queue.pause_queue("held")
    held = queue.submit("tests.core_tasks:noop", args=(1,), queue="held")
    done = queue.submit("tests.core_tasks:noop", args=(2,))
    sup = processes.supervisor(db_path, "-c", "1", "--burst")
    assert sup.wait(timeout=60) == 0
    assert (done.state, held.state) == ("succeeded", "queued")
