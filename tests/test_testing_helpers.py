"""Issue 18: jobq.testing and its pytest plugin. ``drain`` runs due jobs in the test's own
process through the store's own claim and finish (retries, dependencies, counts as in a real
run); ``run_inline`` runs what a block submits at once; ``jobq_queue`` is the plugin's fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import jobq
import jobq.testing
from jobq.testing import drain, run_inline
from tests import stack_tasks
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def test_the_plugin_is_registered_by_its_entry_point(pytestconfig: pytest.Config, jobq_queue: jobq.Queue, tmp_path: Path) -> None:
    assert pytestconfig.pluginmanager.has_plugin("jobq")
    assert Path(jobq_queue.path).parent == tmp_path
    assert jobq_queue.status()["counts"]["queued"] == 0


def test_drain_runs_every_due_job_in_this_process_in_order(jobq_queue: jobq.Queue) -> None:
    q = jobq_queue
    low = q.submit(stack_tasks.square, (2,))
    high = q.submit("os:getpid", priority=5)
    later = q.submit(stack_tasks.square, (9,), delay="1h")
    other = q.submit(stack_tasks.square, (3,), queue="other")
    ran = drain(q, queue="default")
    assert [r.job_id for r in ran] == [high.id, low.id]  # claim order: priority first
    assert ran[0].result == os.getpid()  # no fork: the test's own process ran it
    assert ran[1].ok and ran[1].result == 4 and ran[1].state == jobq.State.SUCCEEDED
    assert low.join(timeout=0.1) == 4  # stored as a supervisor would store it
    assert later.state == "scheduled" and other.state == "queued"
    assert [r.job_id for r in drain(q)] == [other.id]
    assert drain(q) == []
    record = q.record(low.id)
    assert record.attempts == 1 and record.started_at and record.finished_at and record.owner.startswith("testing-")
    assert {k: v for k, v in q.status()["counts"].items() if v} == {"succeeded": 3, "scheduled": 1}


def test_drain_returns_errors_with_tracebacks_and_retries(jobq_queue: jobq.Queue, tmp_path: Path) -> None:
    q = jobq_queue
    bad = q.submit(stack_tasks.raise_value, ("no such order",))
    flaky = q.submit(stack_tasks.flaky, (str(tmp_path / "calls"), 2), retries=2, retry_backoff=0)
    slow_retry = q.submit(stack_tasks.flaky, (str(tmp_path / "slow"), 5), retries=1, retry_backoff="1h")
    ran = drain(q)
    by_job: dict[int, list[jobq.testing.Ran]] = {}
    for r in ran:
        by_job.setdefault(r.job_id, []).append(r)
    [failure] = by_job[bad.id]
    assert failure.state == jobq.State.FAILED and failure.error is not None
    assert failure.error.type == "ValueError" and failure.error.message == "no such order"
    assert "raise_value" in failure.error.traceback
    assert [(r.attempt, r.state, r.result) for r in by_job[flaky.id]] == [
        (1, jobq.State.QUEUED, None),
        (2, jobq.State.QUEUED, None),
        (3, jobq.State.SUCCEEDED, 3),
    ]
    # a retry waits its backoff, as in a real run: it is not due within this drain
    assert [(r.attempt, r.state) for r in by_job[slow_retry.id]] == [(1, jobq.State.QUEUED)]
    assert slow_retry.state == "queued" and drain(q) == []
    with pytest.raises(jobq.JobFailed, match="no such order"):
        bad.join(timeout=0.1)


def test_drain_follows_dependencies(jobq_queue: jobq.Queue) -> None:
    q = jobq_queue
    first = q.submit(stack_tasks.square, (3,))
    second = q.submit("builtins:sum", depends_on=[first], pass_results=True)
    broken = q.submit(stack_tasks.raise_key)
    never = q.submit(stack_tasks.square, (1,), depends_on=[broken])
    ran = drain(q)
    order = [r.job_id for r in ran]
    assert sorted(order) == sorted([first.id, second.id, broken.id]) and order.index(first.id) < order.index(second.id)
    assert second.join(timeout=0.1) == 9  # sum of its dependencies' results
    assert never.state == "cancelled"


def test_drain_runs_chunked_maps_and_gives_current_job(jobq_queue: jobq.Queue) -> None:
    q = jobq_queue
    group = q.map(stack_tasks.square, range(10), chunksize=4)
    job = q.submit(stack_tasks.progress_then_value, (5,))
    drain(q)
    assert group.join(timeout=0.1) == [x * x for x in range(10)]
    assert job.join(timeout=0.1) == {"job": job.id, "attempt": 1, "x": 5}


def test_drain_records_and_replays_durable_steps(jobq_queue: jobq.Queue, tmp_path: Path) -> None:
    q = jobq_queue
    log = tmp_path / "log"
    job = q.submit(stack_tasks.checkout, (str(log), 7), retries=1, retry_backoff=0)
    ran = drain(q)
    assert [(r.attempt, r.state) for r in ran] == [(1, jobq.State.QUEUED), (2, jobq.State.SUCCEEDED)]
    assert job.join(timeout=0.1) == {"charged": 7}
    assert log.read_text().splitlines() == ["charge 7", "attempt", "attempt"]  # the step ran once

    napping = q.submit(stack_tasks.nap_then_value, (0.3,))
    [first] = drain(q)
    assert first.state == jobq.State.SCHEDULED and napping.state == "scheduled"  # suspended, as in a real run
    woke = wait_for(lambda: drain(q), timeout=10, what="the sleeping job to be due")
    assert [(r.job_id, r.state, r.result) for r in woke] == [(napping.id, jobq.State.SUCCEEDED, "awake")]


def test_run_inline_runs_each_submit_at_once(jobq_queue: jobq.Queue) -> None:
    q = jobq_queue
    with run_inline(q) as ran:
        job = q.submit(stack_tasks.square, (7,))
        assert job.state == "succeeded" and job.join(timeout=0.1) == 49
        assert q.map(stack_tasks.square, [1, 2]).join(timeout=0.1) == [1, 4]
        parent = q.submit(stack_tasks.submit_child, (q.path, 4))  # a job that submits runs its child too
        child = q.get(parent.join(timeout=0.1))
        assert child.join(timeout=0.1) == 16
        with pytest.raises(jobq.JobFailed):
            q.submit(stack_tasks.raise_value).join(timeout=0.1)
    assert len(ran) == 6  # square, two map items, the parent, its child, the failure
    after = q.submit(stack_tasks.square, (8,))
    assert after.state == "queued"  # outside the block, submits only store


# -- the README's example: a web handler that submits, tested with drain and run_inline --------
def test_placing_an_order_sends_its_confirmation(jobq_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from tests import stack_app as app_module

    monkeypatch.setattr(app_module, "q", jobq_queue)
    job_id = TestClient(app_module.app).post("/orders/12").json()["job"]
    [ran] = jobq.testing.drain(jobq_queue)  # runs it here, now
    assert ran.job_id == job_id and ran.ok and ran.result == "sent"


def test_the_handler_with_jobs_run_inline(jobq_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from tests import stack_app as app_module

    monkeypatch.setattr(app_module, "q", jobq_queue)
    with jobq.testing.run_inline(jobq_queue):
        job_id = TestClient(app_module.app).post("/orders/3").json()["job"]
    assert jobq_queue.get(job_id).join(timeout=0) == "sent"


def test_drain_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    q = jobq.Queue(pg_url)
    flaky = q.submit(stack_tasks.flaky, (str(tmp_path / "calls"), 1), retries=1, retry_backoff=0)
    then = q.submit("builtins:sum", depends_on=[flaky], pass_results=True)
    ran = drain(q)
    assert [(r.job_id, r.state) for r in ran] == [
        (flaky.id, jobq.State.QUEUED),
        (flaky.id, jobq.State.SUCCEEDED),
        (then.id, jobq.State.SUCCEEDED),
    ]
    assert then.join(timeout=0.1) == 2
    q.close()


def test_the_plugin_costs_a_pytest_session_nothing_until_used() -> None:
    """Every pytest session of a project with jobq installed loads the plugin: it imports no
    store, worker or client until a test asks for them."""
    import subprocess
    import sys

    from tests.conftest import REPO, _env

    code = "import sys, jobq.testing.plugin; print(sorted(m for m in sys.modules if m.startswith('jobq')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['jobq', 'jobq.core', 'jobq.testing', 'jobq.testing.plugin']"
