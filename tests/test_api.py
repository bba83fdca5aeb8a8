"""The Python API of the core issue: Queue, Job, Supervisor (embedded and blocking), joins."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

import jobq
from tests import tasks
from tests.conftest import wait_for

RECORD_FIELDS = {
    "id",
    "name",
    "target",
    "args",
    "kwargs",
    "queue",
    "priority",
    "state",
    "attempts",
    "result",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "supervisor",
    "worker",
}
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def drain(q: jobq.Queue, concurrency: int = 2, **kwargs: object) -> int:
    """Run a burst supervisor in this process until no job is due."""
    return jobq.Supervisor(q, concurrency=concurrency, burst=True, **kwargs).run()


# -- Queue and submit ------------------------------------------------------------------
def test_queue_creates_file_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fresh.db"
    path.parent.mkdir()
    assert not path.exists()
    q = jobq.Queue(str(path))
    assert path.is_file()
    job = q.submit("tests.tasks:add", args=(1, 2))
    # A second handle on the same file sees the job: it is on disk, not in memory.
    again = jobq.Queue(str(path))
    assert again.get(job.id).state == "queued"
    assert again.store.count_jobs() == 1
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert tables, "no schema was created"


def test_submit_string_target_stores_everything(queue: jobq.Queue) -> None:
    job = queue.submit(
        "tests.tasks:echo",
        args=(1, "two", [3], {"four": 4}),
        kwargs={"k": None, "v": 1.5},
        queue="emails",
        priority=7,
        name="my-echo",
    )
    assert isinstance(job, jobq.Job)
    assert job.state == "queued"
    assert job.attempts == 0
    rec = queue.record(job.id).to_dict()
    assert RECORD_FIELDS <= set(rec), RECORD_FIELDS - set(rec)
    assert rec["id"] == job.id
    assert rec["name"] == "my-echo"
    assert rec["target"] == "tests.tasks:echo"
    assert rec["args"] == [1, "two", [3], {"four": 4}]
    assert rec["kwargs"] == {"k": None, "v": 1.5}
    assert rec["queue"] == "emails"
    assert rec["priority"] == 7
    assert rec["state"] == "queued"
    assert rec["attempts"] == 0
    assert rec["result"] is None and rec["error"] is None
    assert rec["started_at"] is None and rec["finished_at"] is None
    assert rec["supervisor"] is None and rec["worker"] is None
    datetime.fromisoformat(rec["created_at"])


def test_submit_defaults(queue: jobq.Queue) -> None:
    rec = queue.record(queue.submit("tests.tasks:add", args=[1]).id).to_dict()
    assert rec["queue"] == "default"
    assert rec["priority"] == 0
    assert rec["kwargs"] == {}
    assert rec["name"] is None


def test_submit_function_object(queue: jobq.Queue) -> None:
    job = queue.submit(tasks.add, args=(2, 3))
    assert queue.record(job.id).target == "tests.tasks:add"
    drain(queue, concurrency=1)
    assert job.join(timeout=10) == 5


def test_get_takes_id_as_printed(queue: jobq.Queue) -> None:
    job = queue.submit("tests.tasks:add", args=(1,))
    assert queue.get(str(job.id)).id == job.id
    assert queue.get(job.id).id == job.id
    assert queue.get(str(job.id)) == queue.get(job.id)
    assert queue.get(str(job.id)).state == "queued"


@pytest.mark.parametrize("bad", ["999999", 999999, "abc", "", "-1", -1])
def test_get_unknown_id_raises_job_not_found(queue: jobq.Queue, bad: object) -> None:
    queue.submit("tests.tasks:add", args=(1,))
    with pytest.raises(jobq.JobNotFound):
        queue.get(bad)
    with pytest.raises(jobq.JobNotFound):
        queue.record(bad)
    with pytest.raises(jobq.JobNotFound):
        queue.logs(bad)


# -- joins -----------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_join_returns_values_and_record_is_filled(queue: jobq.Queue) -> None:
    jobs = [queue.submit("tests.tasks:add", args=(i, 100)) for i in range(5)]
    echo = queue.submit("tests.tasks:echo", args=("a", 1), kwargs={"b": [2]})
    assert drain(queue) == 0
    assert [j.join(timeout=10) for j in jobs] == [i + 100 for i in range(5)]
    assert echo.join(timeout=10) == {"args": ["a", 1], "kwargs": {"b": [2]}}
    job = jobs[0]
    assert job.state == "succeeded"
    assert job.attempts == 1
    rec = queue.record(job.id).to_dict()
    assert rec["result"] == 100
    assert rec["error"] is None
    assert isinstance(rec["worker"], int) and rec["worker"] > 0 and rec["worker"] != os.getpid()
    assert rec["supervisor"]
    started = datetime.fromisoformat(rec["started_at"])
    finished = datetime.fromisoformat(rec["finished_at"])
    created = datetime.fromisoformat(rec["created_at"])
    assert created <= started <= finished


@pytest.mark.timeout(60)
def test_join_raises_job_failed_with_remote_traceback(queue: jobq.Queue) -> None:
    bad = queue.submit("tests.tasks:fail", args=("kaboom-42",))
    good = queue.submit("tests.tasks:add", args=(1, 1))
    drain(queue, concurrency=1)
    with pytest.raises(jobq.JobFailed) as info:
        bad.join(timeout=10)
    exc = info.value
    assert exc.error_type == "ValueError"
    assert "kaboom-42" in exc.message
    assert "in fail" in exc.traceback, exc.traceback
    assert "kaboom-42" in exc.traceback
    assert bad.state == "failed"
    err = queue.record(bad.id).error
    assert err is not None and err["type"] == "ValueError"
    # The failure stays with its own job.
    assert good.join(timeout=10) == 2


def test_join_times_out_without_supervisor(queue: jobq.Queue) -> None:
    job = queue.submit("tests.tasks:add", args=(1, 2))
    with pytest.raises(TimeoutError):
        job.join(timeout=0.3)
    with pytest.raises(TimeoutError):
        job.join(timeout=0)
    assert job.state == "queued"


# -- embedded supervisor ---------------------------------------------------------------
@pytest.mark.timeout(90)
def test_embedded_supervisor_context_manager(queue: jobq.Queue) -> None:
    with jobq.Supervisor(queue, concurrency=2) as sup:
        jobs = [queue.submit("tests.tasks:add", args=(i, i)) for i in range(10)]
        assert [j.join(timeout=30) for j in jobs] == [2 * i for i in range(10)]
        status = wait_for(lambda: queue.status()["supervisors"], timeout=30, what="supervisor registered")
        assert len(status) == 1
        entry = status[0]
        assert entry["pid"] == sup.pid
        assert entry["concurrency"] == 2
        for key in ("host", "heartbeat_at"):
            assert key in entry
        assert queue.record(jobs[0].id).to_dict()["supervisor"] == entry["id"]
    # Leaving the block stops the supervisor; no job is left running.
    assert wait_for(lambda: queue.status()["supervisors"] == [], timeout=30, what="supervisor gone")
    assert queue.status()["counts"]["running"] == 0


@pytest.mark.timeout(120)
def test_burst_supervisor_drains_200_jobs(queue: jobq.Queue) -> None:
    jobs = [queue.submit("tests.tasks:add", args=(i,), kwargs={"y": 1000}) for i in range(200)]
    assert drain(queue, concurrency=2) == 0
    counts = queue.status()["counts"]
    assert counts["succeeded"] == 200, counts
    assert counts["queued"] == counts["running"] == counts["failed"] == 0
    assert [j.join(timeout=5) for j in jobs] == [i + 1000 for i in range(200)]
    assert all(queue.record(j.id).attempts == 1 for j in jobs[::20])


@pytest.mark.timeout(60)
def test_priority_higher_runs_first(queue: jobq.Queue, tmp_path: Path) -> None:
    side = tmp_path / "order.txt"
    priorities = [0, 5, -3, 10, 1, 5, 0, -1, 7, 2]
    for n, p in enumerate(priorities):
        queue.submit("tests.tasks:record", args=(str(side), f"{p}:{n}"), priority=p)
    drain(queue, concurrency=1)
    ran = side.read_text().split()
    assert len(ran) == len(priorities)
    ran_priorities = [int(token.split(":")[0]) for token in ran]
    assert ran_priorities == sorted(priorities, reverse=True), ran
    # Equal priorities run in submission order.
    fives = [token for token in ran if token.startswith("5:")]
    assert fives == ["5:1", "5:5"]


# -- status ----------------------------------------------------------------------------
def test_status_shape_lists_every_state(queue: jobq.Queue) -> None:
    empty = queue.status()
    assert set(empty) >= {"counts", "queues", "supervisors"}
    for state in STATES:
        assert empty["counts"][state] == 0
    assert empty["supervisors"] == []
    queue.submit("tests.tasks:add", args=(1,))
    queue.submit("tests.tasks:add", args=(1,), queue="other")
    queue.submit("tests.tasks:add", args=(1,), queue="other")
    status = queue.status()
    assert status["counts"]["queued"] == 3
    for state in STATES:
        assert state in status["counts"]
        assert state in status["queues"]["default"]
        assert state in status["queues"]["other"]
    assert status["queues"]["default"]["queued"] == 1
    assert status["queues"]["other"]["queued"] == 2
    assert status["queues"]["other"]["succeeded"] == 0
    assert all(isinstance(v, int) for v in status["counts"].values())


@pytest.mark.timeout(60)
def test_status_counts_after_run(queue: jobq.Queue) -> None:
    queue.submit("tests.tasks:add", args=(1,))
    queue.submit("tests.tasks:fail")
    queue.submit("tests.tasks:add", args=(1,), queue="q2")
    drain(queue)
    status = queue.status()
    assert status["counts"]["succeeded"] == 2
    assert status["counts"]["failed"] == 1
    assert status["counts"]["queued"] == 0
    assert status["queues"]["default"]["failed"] == 1
    assert status["queues"]["q2"]["succeeded"] == 1


# -- crashes, output, bad results ------------------------------------------------------
@pytest.mark.timeout(60)
def test_captured_stdout_and_stderr(queue: jobq.Queue) -> None:
    job = queue.submit("tests.tasks:shout", args=(7,))
    other = queue.submit("tests.tasks:shout", args=(8,))
    drain(queue)
    assert job.join(timeout=10) == 7
    logs = queue.logs(job.id)
    assert "Worker: 7" in logs
    assert "to stderr 7" in logs
    assert "Worker: 8" not in logs  # each job keeps its own output
    assert "Worker: 8" in queue.logs(str(other.id))
    assert job.logs() == logs


def test_logs_empty_for_unrun_job(queue: jobq.Queue) -> None:
    job = queue.submit("tests.tasks:add", args=(1,))
    assert queue.logs(job.id) == ""


@pytest.mark.timeout(60)
def test_unserialisable_result_fails_clearly_and_next_job_runs(queue: jobq.Queue) -> None:
    bad = queue.submit("tests.tasks:unserialisable")
    good = queue.submit("tests.tasks:add", args=(20, 22))
    drain(queue, concurrency=1)
    with pytest.raises(jobq.JobFailed) as info:
        bad.join(timeout=10)
    text = f"{info.value.error_type} {info.value.message}".lower()
    assert "json" in text or "serial" in text, text
    assert good.join(timeout=10) == 42
    assert good.state == "succeeded"


@pytest.mark.timeout(60)
def test_os_exit_fails_job_with_exit_code(queue: jobq.Queue) -> None:
    dead = queue.submit("tests.tasks:exit_hard", args=(3,))
    after = [queue.submit("tests.tasks:add", args=(i, 1)) for i in range(4)]
    drain(queue, concurrency=1)
    with pytest.raises(jobq.JobFailed) as info:
        dead.join(timeout=10)
    assert "exit code" in info.value.message
    assert "3" in info.value.message
    assert dead.state == "failed"
    assert [j.join(timeout=10) for j in after] == [1, 2, 3, 4]


@pytest.mark.timeout(90)
def test_spawn_start_method(queue: jobq.Queue) -> None:
    with jobq.Supervisor(queue, concurrency=2, start_method="spawn"):
        jobs = [queue.submit("tests.tasks:add", args=(i, 3)) for i in range(6)]
        failing = queue.submit("tests.tasks:fail", args=("spawned",))
        shout = queue.submit("tests.tasks:shout", args=(5,))
        assert [j.join(timeout=60) for j in jobs] == [i + 3 for i in range(6)]
        with pytest.raises(jobq.JobFailed) as info:
            failing.join(timeout=60)
        assert info.value.error_type == "ValueError"
        assert shout.join(timeout=60) == 5
    assert "Worker: 5" in queue.logs(shout.id)
    assert queue.status()["counts"]["running"] == 0
