"""Durable steps in the store (issue 16), on SQLite and PostgreSQL: fenced step records,
event rows consumed once, the suspend transition, retry from a step. Two connections are
interleaved by hand where a race matters."""

from __future__ import annotations

import time
from typing import Any

import pytest

from jobq.core.errors import ValidationError
from jobq.core.models import JobError, Outcome, OutcomeKind
from jobq.core.spec import JobSpec, validate_spec
from jobq.core.steps import StepKind, StepRecord, StepState, WaitState
from jobq.store import Store, open_store


def spec(**kw: Any) -> JobSpec:
    return validate_spec({"target": "tests.core_tasks:noop", **kw}, 10**6)


def running_job(store: Store, owner: str = "sup-1", **kw: Any) -> tuple[int, int]:
    (sub,), _ = store.submit([spec(**kw)], time.time())
    (claimed,) = store.claim(owner, None, 1, time.time(), time.time() + 30)
    return claimed.id, claimed.attempts


def step(job_id: int, attempt: int, seq: int, name: str = "charge", value: str = "1") -> StepRecord:
    now = time.time()
    return StepRecord(job_id, seq, name, 1, StepKind.STEP, StepState.SUCCEEDED, attempt, value, now, now)


def wait_step(job_id: int, attempt: int, seq: int, key: str, deadline: float | None = None) -> StepRecord:
    return StepRecord(
        job_id, seq, "wait_for", 1, StepKind.WAIT, StepState.WAITING, attempt, None, time.time(), None, key, deadline
    )


def test_a_step_is_recorded_only_for_the_attempt_that_holds_the_job(any_db: str) -> None:
    worker, sweeper = open_store(any_db), open_store(any_db)
    job_id, attempt = running_job(worker, retries=3)
    assert worker.record_step("sup-1", step(job_id, attempt, 0))
    # Another connection takes the job back (its supervisor declared dead) and it is claimed again.
    assert sweeper.requeue_lost(time.time(), owner="sup-1", reason="test") == [job_id]
    (again,) = sweeper.claim("sup-2", None, 1, time.time(), time.time() + 30)
    assert again.attempts == attempt + 1
    # The stale worker's next step is refused and writes nothing; the new attempt's is kept.
    assert not worker.record_step("sup-1", step(job_id, attempt, 1, "ship"))
    assert not worker.record_step("sup-2", step(job_id, attempt, 1, "ship"))  # right owner, old attempt
    assert [s.name for s in sweeper.load_steps(job_id)] == ["charge"]
    assert sweeper.record_step("sup-2", step(job_id, again.attempts, 1, "ship"))
    assert [(s.name, s.attempt) for s in worker.load_steps(job_id)] == [("charge", 1), ("ship", 2)]
    assert worker.step_totals() == (2, 0)


def test_an_event_is_consumed_once_and_kept_until_a_job_asks(any_db: str) -> None:
    store = open_store(any_db)
    event = store.send_event("approval-7", '{"ok":true}', time.time())
    store.send_event("other", "1", time.time())
    first, a1 = running_job(store)
    second, a2 = running_job(store)
    assert store.take_event("sup-1", wait_step(first, a1, 0, "approval-7"), "approval-7", None, time.time()) == (
        WaitState.RECEIVED,
        '{"ok":true}',
    )
    state, payload = store.take_event("sup-1", wait_step(second, a2, 0, "approval-7"), "approval-7", None, time.time())
    assert (state, payload) == (WaitState.WAITING, None)  # delivered once: the second job waits
    rows = {r[0]: r for r in store.events(None, 10)}
    assert rows[event][4] == first and rows[event][5] is not None
    assert [r[4] for r in store.events("other", 10)] == [None]  # nobody waits for it: kept
    (received,) = store.load_steps(first)
    assert (received.state, received.value, received.wait_key) == (StepState.RECEIVED, '{"ok":true}', "approval-7")
    assert store.waiting_for(second) == "approval-7"
    assert store.purge_events(time.time() + 1, consumed_only=True) == 1
    assert [r[1] for r in store.events(None, 10)] == ["other"]
    assert store.purge_events(time.time() + 1, consumed_only=False) == 1
    assert store.events(None, 10) == []


def test_a_wait_past_its_deadline_times_out(any_db: str) -> None:
    store = open_store(any_db)
    job_id, attempt = running_job(store)
    now = time.time()
    state, _ = store.take_event("sup-1", wait_step(job_id, attempt, 0, "k", now - 1), "k", now - 1, now)
    assert state == WaitState.TIMED_OUT
    assert store.load_steps(job_id)[0].state == StepState.TIMED_OUT


def test_an_event_sent_while_the_waiter_suspends_is_not_lost(any_db: str) -> None:
    """The job finds no event and records its wait; the event arrives (from another
    connection) before the job's suspension is written: the suspension sees it and makes
    the job due at once instead of at its deadline."""
    worker, sender = open_store(any_db), open_store(any_db)
    job_id, attempt = running_job(worker)
    far = time.time() + 3600
    assert worker.take_event("sup-1", wait_step(job_id, attempt, 0, "k", far), "k", far, time.time())[0] == WaitState.WAITING
    sender.send_event("k", '"go"', time.time())  # the job is still running: no waiter to wake
    assert sender.get(job_id).state in ("claimed", "running")  # held
    now = time.time()
    suspended = Outcome(job_id, attempt, OutcomeKind.SUSPENDED, finished_at=now, wake_at=far, wait_key="k")
    assert worker.finish("sup-1", [suspended], now) == []
    record = sender.get(job_id)
    assert record.state == "scheduled" and record.run_at <= time.time()
    assert record.attempts == attempt - 1  # a suspension does not count as an attempt
    (claimed,) = sender.claim("sup-2", None, 1, time.time(), time.time() + 30)
    assert claimed.id == job_id and claimed.attempts == attempt


def test_a_sent_event_wakes_a_suspended_waiter(any_db: str) -> None:
    store = open_store(any_db)
    job_id, attempt = running_job(store)
    far = time.time() + 3600
    store.take_event("sup-1", wait_step(job_id, attempt, 0, "k", far), "k", far, time.time())
    store.finish("sup-1", [Outcome(job_id, attempt, OutcomeKind.SUSPENDED, wake_at=far, wait_key="k")], time.time())
    assert store.get(job_id).run_at == pytest.approx(far)
    assert store.claim("sup-1", None, 1, time.time(), time.time() + 30) == []
    store.send_event("k", "1", time.time())
    (claimed,) = store.claim("sup-1", None, 1, time.time(), time.time() + 30)
    assert claimed.id == job_id


def test_retry_from_a_step_keeps_the_steps_before_it(any_db: str) -> None:
    store = open_store(any_db)
    job_id, attempt = running_job(store)
    for seq, name in enumerate(["charge", "reserve", "ship", "notify"]):
        assert store.record_step("sup-1", step(job_id, attempt, seq, name))
    store.finish("sup-1", [Outcome(job_id, attempt, OutcomeKind.SUCCEEDED, result_json="1")], time.time())
    with pytest.raises(ValidationError) as info:
        store.retry_from_step(job_id, "nope", time.time())
    assert info.value.field == "from_step"
    assert [s.name for s in store.load_steps(job_id)] == ["charge", "reserve", "ship", "notify"]  # unchanged
    assert store.get(job_id).state == "succeeded"
    assert store.retry_from_step(job_id, "ship", time.time())
    assert [s.name for s in store.load_steps(job_id)] == ["charge", "reserve"]
    assert store.get(job_id).state == "queued"
    assert not store.retry_from_step(job_id, "charge", time.time())  # queued: not retried again


def test_a_purged_job_takes_its_steps_and_received_events_along(any_db: str) -> None:
    store = open_store(any_db)
    store.send_event("k", "1", time.time())
    job_id, attempt = running_job(store)
    store.record_step("sup-1", step(job_id, attempt, 0))
    store.take_event("sup-1", wait_step(job_id, attempt, 1, "k"), "k", None, time.time())
    store.finish("sup-1", [Outcome(job_id, attempt, OutcomeKind.FAILED, error=JobError("E"), retriable=False)], time.time())
    assert store.purge(time.time() + 1, ["failed"], 0.0) == 1
    assert store.load_steps(job_id) == [] and store.events(None, 10) == []


def test_a_job_asked_to_cancel_ends_cancelled_instead_of_suspending(any_db: str) -> None:
    store = open_store(any_db)
    job_id, attempt = running_job(store)
    assert store.cancel([job_id], time.time()) == {job_id: "cancelling"}
    wake = time.time() + 60
    assert store.finish("sup-1", [Outcome(job_id, attempt, OutcomeKind.SUSPENDED, wake_at=wake)], time.time()) == []
    assert store.get(job_id).state == "cancelled"
