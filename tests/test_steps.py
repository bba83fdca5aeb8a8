"""Durable steps with real supervisors, workers and signals (issue 16): a job resumes after
its worker or supervisor is SIGKILLed or it times out, sleeps and waits without holding a
worker, and receives events sent before, during and after its wait."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import jobq
from tests.conftest import failure_of, wait_for
from tests.test_crashes import lines, pid_gone


def stall_pid(path: Path, n: int = 4, which: int = 0) -> int:
    """The worker pid step ``n`` recorded (its ``which``-th run)."""
    runs = [line for line in lines(path) if line.startswith(f"step {n} pid ")]
    return int(runs[which].split()[-1]) if len(runs) > which else 0


def assert_resumed(path: Path, step4_runs: int = 2) -> None:
    got = lines(path)
    for n in (1, 2, 3, 5):
        assert sum(1 for line in got if line == f"step {n}") == 1, got
    assert sum(1 for line in got if line.startswith("step 4 pid")) == step4_runs, got


@pytest.mark.timeout(120)
def test_a_worker_sigkilled_in_step_4_resumes_at_step_4(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    out, gate = tmp_path / "out.txt", tmp_path / "gate"
    processes.supervisor(queue.path, "-c", "1")
    job = queue.submit("tests.step_tasks:five_steps", args=(str(out), 4, str(gate)), retries=2, retry_backoff=0)
    pid = wait_for(lambda: stall_pid(out), 60, what="step 4 to start")
    os.kill(int(pid), signal.SIGKILL)
    wait_for(lambda: pid_gone(int(pid)), 10, what="the worker to die")
    gate.touch()
    assert job.join(timeout=60) == [10, 20, 30, 40, 50]
    assert_resumed(out)
    steps = queue.steps(job.id)
    assert [(s.name, s.call, s.attempt) for s in steps] == [
        ("record_line", 1, 1),
        ("record_line", 2, 1),
        ("record_line", 3, 1),
        ("stall", 1, 2),
        ("record_line", 4, 2),
    ]
    assert queue.record(job.id).attempts == 2


@pytest.mark.timeout(120)
def test_a_supervisor_sigkilled_in_step_4_leaves_steps_1_to_3_done(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    out, gate = tmp_path / "out.txt", tmp_path / "gate"
    first = processes.supervisor(queue.path, "-c", "1")
    job = queue.submit("tests.step_tasks:five_steps", args=(str(out), 4, str(gate)), retries=1)
    pid = wait_for(lambda: stall_pid(out), 60, what="step 4 to start")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    wait_for(lambda: pid_gone(int(pid)), 10, what="the dead supervisor's worker to exit")
    gate.touch()
    processes.supervisor(queue.path, "-c", "1")
    assert job.join(timeout=60) == [10, 20, 30, 40, 50]
    assert_resumed(out)


@pytest.mark.timeout(120)
def test_a_timeout_in_step_4_with_one_retry_resumes_at_step_4(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    out, gate = tmp_path / "out.txt", tmp_path / "gate"
    processes.supervisor(queue.path, "-c", "1")
    job = queue.submit("tests.step_tasks:five_steps", args=(str(out), 4, str(gate)), retries=1, retry_backoff=0, timeout=2)
    wait_for(lambda: stall_pid(out, which=1), 60, what="step 4 to start again after the timeout")
    gate.touch()
    assert job.join(timeout=60) == [10, 20, 30, 40, 50]
    assert_resumed(out)
    assert [e["type"] for e in queue.record(job.id).errors] == ["JobTimeout"]


@pytest.mark.timeout(120)
def test_a_sleeping_job_holds_no_worker(queue: jobq.Queue, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with jobq.Supervisor(queue, concurrency=1):
        sleeper = queue.submit("tests.step_tasks:steps_then_sleep", args=(str(out), 2.0))
        wait_for(lambda: queue.record(sleeper.id).state == "scheduled", 30, what="the sleeper to suspend")
        wake_at = queue.record(sleeper.id).run_at
        shorts = [queue.submit("tests.step_tasks:short", args=(i,)) for i in range(20)]
        assert [j.join(timeout=30) for j in shorts] == list(range(20))
        assert all(queue.record(j.id).finished_at < wake_at for j in shorts)  # all ran while it slept
        assert queue.record(sleeper.id).state == "scheduled"
        assert sleeper.join(timeout=30) == [10, 20, 30]
    assert lines(out) == ["step 1", "step 2", "step 3"]  # the steps before the sleep ran once
    record = queue.record(sleeper.id)
    assert record.finished_at >= wake_at and record.attempts == 1
    assert [s["state"] for s in (s.to_dict() for s in queue.steps(sleeper.id))] == [
        "succeeded",
        "succeeded",
        "slept",
        "succeeded",
    ]


@pytest.mark.timeout(120)
def test_a_job_sleeping_through_a_supervisor_restart_wakes_on_time(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    first = processes.supervisor(queue.path, "-c", "1")
    job = queue.submit("tests.step_tasks:steps_then_sleep", args=(str(out), 3.0))
    wait_for(lambda: queue.record(job.id).state == "scheduled", 30, what="the job to sleep")
    wake_at = queue.record(job.id).run_at
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    processes.supervisor(queue.path, "-c", "1")
    assert job.join(timeout=30) == [10, 20, 30]
    assert wake_at <= queue.record(job.id).finished_at < wake_at + 5
    assert lines(out) == ["step 1", "step 2", "step 3"]


@pytest.mark.timeout(120)
def test_events_before_during_and_after_the_wait(queue: jobq.Queue, tmp_path: Path) -> None:
    with jobq.Supervisor(queue, concurrency=2):
        # Before: the event is kept, and received as soon as the job asks (no suspension).
        queue.send_event("before", {"n": 1})
        early = queue.submit("tests.step_tasks:charge_then_wait", args=(str(tmp_path / "a"), "before", 30))
        assert early.join(timeout=30) == {"n": 1}
        # During: the job waits scheduled, without a worker, and says for which key.
        a = queue.submit("tests.step_tasks:charge_then_wait", args=(str(tmp_path / "b"), "approval-1", None))
        b = queue.submit("tests.step_tasks:charge_then_wait", args=(str(tmp_path / "c"), "approval-2", None))
        wait_for(lambda: queue.waiting_for(a.id) and queue.waiting_for(b.id), 30, what="both jobs to wait")
        assert queue.record(a.id).state == "scheduled" and queue.waiting_for(a.id) == "approval-1"
        queue.send_event("approval-2", "two")
        assert b.join(timeout=30) == "two"
        assert queue.record(a.id).state == "scheduled"  # the other key's event did not wake it
        queue.send_event("approval-1", "one")
        assert a.join(timeout=30) == "one"
        # A timeout: EventTimeout inside the job.
        late = queue.submit("tests.step_tasks:charge_then_wait", args=(str(tmp_path / "d"), "never", 0.5))
        assert late.join(timeout=30) == "timed out"
        # After: an event for a wait that ended, and for a key nobody waits for, stays.
        queue.send_event("never", "too late")
    for path in "bc":
        assert lines(tmp_path / path) == ["step 1", "step 2"]  # step 1 ran once despite the suspension
    assert lines(tmp_path / "d") == ["step 1", "step 99"]
    pending = queue.events("never")
    assert [(e["payload"], e["consumed_by"]) for e in pending] == [("too late", None)]
    assert {e["key"]: e["consumed_by"] for e in queue.events()}["approval-1"] == a.id
    assert queue.purge_events() == 4
    assert queue.events() == []
    assert [(s.name, s.to_dict()["state"]) for s in queue.steps(late.id)] == [
        ("record_line", "succeeded"),
        ("wait_for", "timed_out"),
        ("record_line", "succeeded"),
    ]


@pytest.mark.timeout(120)
def test_step_failures_name_the_step(queue: jobq.Queue, tmp_path: Path) -> None:
    with jobq.Supervisor(queue, concurrency=1):
        bad = queue.submit("tests.step_tasks:not_json", retries=2)
        err = failure_of(bad, timeout=30)
        assert err.error_type == "StepNotSerializable" and "'make-set'" in err.message
        assert queue.record(bad.id).attempts == 1  # not retried: it would fail the same way
        mark = tmp_path / "ran"
        varying = queue.submit("tests.step_tasks:varying", args=(str(mark),), retries=1, retry_backoff=0)
        err = failure_of(varying, timeout=30)
        assert err.error_type == "StepMismatch" and "'first'" in err.message and "'second'" in err.message
        flaky = queue.submit("tests.step_tasks:flaky_step", args=(str(tmp_path / "flaky"),))
        assert flaky.join(timeout=30) == 7  # the step's own retries, within one attempt
        assert lines(tmp_path / "flaky") == ["try", "try", "try"]


@pytest.mark.timeout(120)
def test_retry_replays_recorded_steps_or_runs_again_from_a_step(queue: jobq.Queue, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with jobq.Supervisor(queue, concurrency=1):
        job = queue.submit("tests.step_tasks:order", args=(str(out),))
        assert job.join(timeout=30) == {"charge": "charge", "reserve": "reserve", "ship": "ship"}
        assert queue.retry(job.id) == []  # a plain retry takes failed or cancelled jobs only
        assert queue.retry(job.id, from_step="ship") == [job.id]
        assert job.join(timeout=30)["ship"] == "ship"
        assert lines(out) == ["charge", "reserve", "ship", "ship"]
        with pytest.raises(jobq.ValidationError):
            queue.retry(job.id, from_step="refund")
        with pytest.raises(jobq.JobNotFound):
            queue.retry(999_999, from_step="ship")
        fail = tmp_path / "fail"
        fail.touch()
        failing = queue.submit("tests.step_tasks:fail_after_steps", args=(str(tmp_path / "f"), str(fail)))
        failure_of(failing, timeout=30)
        fail.unlink()
        assert queue.retry(failing.id) == [failing.id]  # plain retry: recorded steps replay
        assert failing.join(timeout=30) == "done"
        assert lines(tmp_path / "f") == ["step 1", "step 2", "step 3"]
    assert queue.store.step_totals()[1] >= 4  # replays are counted (2 + 2)


@pytest.mark.timeout(120)
def test_async_jobs_sleep_and_wait_durably(queue: jobq.Queue, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with jobq.Supervisor(queue, concurrency=1):
        job = queue.submit("tests.step_tasks:async_steps", args=(str(out), "go"))
        wait_for(lambda: queue.waiting_for(job.id) == "go", 30, what="the async job to wait")
        queue.send_event("go", [1, 2])
        assert job.join(timeout=30) == [1, [1, 2]]
    assert lines(out) == ["a1", "after"]


@pytest.mark.timeout(120)
def test_steps_in_a_pool_and_in_a_chunked_map(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    from tests import step_tasks

    with jobq.Pool(1, db=str(tmp_path / "pool.db")) as pool:
        assert pool.apply(step_tasks.steps_then_sleep, (str(out), 0.5)) == [10, 20, 30]
    q = jobq.Queue(str(tmp_path / "map.db"))
    with jobq.Supervisor(q, concurrency=2):
        group = q.map("tests.step_tasks:chunk_item", [(str(out), n) for n in range(6)], chunksize=3)
        assert group.join(timeout=30) == [0, 2, 4, 6, 8, 10]
    # A chunk is one job: its items' steps are that job's, counted in call order.
    steps = [q.steps(job_id) for job_id in group.job_ids]
    assert [[(s.name, s.call) for s in chunk] for chunk in steps] == [[("item", 1), ("item", 2), ("item", 3)]] * 2


@pytest.mark.timeout(120)
def test_steps_sleep_and_events_on_postgres(pg_url: str, tmp_path: Path) -> None:
    q = jobq.Queue(pg_url)
    out = tmp_path / "out.txt"
    with jobq.Supervisor(q, concurrency=1):
        sleeper = q.submit("tests.step_tasks:steps_then_sleep", args=(str(out), 1.0))
        waiter = q.submit("tests.step_tasks:charge_then_wait", args=(str(tmp_path / "w"), "pg-key", None))
        wait_for(lambda: q.waiting_for(waiter.id) == "pg-key", 30, what="the job to wait")
        q.send_event("pg-key", {"approved": True})
        assert waiter.join(timeout=30) == {"approved": True}
        assert sleeper.join(timeout=30) == [10, 20, 30]
    assert lines(out) == ["step 1", "step 2", "step 3"]
    assert lines(tmp_path / "w") == ["step 1", "step 2"]


def test_bad_input_gets_a_typed_error_and_changes_nothing(queue: jobq.Queue) -> None:
    job = queue.submit("tests.step_tasks:short", args=(1,))
    before = (queue.events(), queue.steps(job.id), queue.record(job.id).state, queue.store.step_totals())
    for call, field in [
        (lambda: jobq.step(name=3), "name"),
        (lambda: jobq.step.run(5, print), "name"),
        (lambda: jobq.step(name="x" * 201), "name"),
        (lambda: jobq.step(retries=-1), "retries"),
        (lambda: jobq.wait_for("k" * 201), "key"),
        (lambda: jobq.sleep(), "seconds"),
        (lambda: queue.send_event("k" * 201, 1), "key"),
        (lambda: queue.send_event("", 1), "key"),
        (lambda: queue.send_event("k", {1, 2}), "payload"),
        (lambda: queue.send_event("k", "x" * (queue.settings.max_payload_bytes + 1)), "payload"),
        (lambda: queue.retry(job.id, from_step=7), "from_step"),
        (lambda: queue.retry(job.id, job.id, from_step="a"), "from_step"),
    ]:
        with pytest.raises(jobq.ValidationError) as info:
            call()
        assert info.value.field == field
    for call in (lambda: queue.steps(999_999), lambda: queue.waiting_for(999_999), lambda: queue.retry(999_999, from_step="a")):
        with pytest.raises(jobq.JobNotFound):
            call()
    assert (queue.events(), queue.steps(job.id), queue.record(job.id).state, queue.store.step_totals()) == before


def test_outside_a_job_steps_just_run() -> None:
    from tests import step_tasks

    assert step_tasks._identity(3) == 3
    assert jobq.step.run("plain", step_tasks._identity, 4) == 4
    jobq.sleep(0)
    with pytest.raises(jobq.JobqError):
        jobq.wait_for("k")
