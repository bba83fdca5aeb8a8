"""The store contract (issue 6): one suite, run unchanged against SQLite and PostgreSQL
through the parametrized ``any_db`` fixture, so no behaviour exists on one backend alone.
Drives the Store directly, with explicit clocks (every method takes ``now``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jobq.core.errors import ValidationError
from jobq.core.models import JobError, Outcome, iso
from jobq.core.spec import JobSpec, validate_spec
from jobq.runtime.schedules import next_run_after
from jobq.store import open_store
from jobq.store.base import JobStart, ProgressUpdate, Schedule, Store, SupervisorInfo
from tests.conftest import REPO, _env, wait_for

pytestmark = pytest.mark.timeout(60)

T = 1_700_000_000.25
ADD = "tests.tasks:add"
BOOM_DICT = {"type": "ValueError", "message": "boom", "traceback": "Traceback ...\nValueError: boom"}
BOOM = JobError(**BOOM_DICT)


def spec(**kw: Any) -> JobSpec:
    kw.setdefault("target", ADD)
    return JobSpec(**kw)


def submit(store: Store, *specs: JobSpec, now: float = T) -> list[int]:
    subs, group = store.submit(list(specs), now)
    assert group is None
    return [s.id for s in subs]


def settle(store: Store, job_id: int, kind: str = "succeeded", result: Any = None, now: float = T, owner: str = "sup") -> None:
    """Claim the job (releasing anything else claimed alongside) and finish it with ``kind``."""
    rec = store.get(job_id)
    assert rec is not None
    claimed = store.claim(owner, [rec.queue], 1000, now, now + 30)
    mine = [c for c in claimed if c.id == job_id]
    assert mine, f"job {job_id} was not claimable"
    outcomes = [Outcome(c.id, c.attempts, "released") for c in claimed if c.id != job_id]
    if kind == "succeeded":
        outcomes.append(Outcome(job_id, mine[0].attempts, kind, result_json=json.dumps(result), output="out", finished_at=now))
    else:
        outcomes.append(Outcome(job_id, mine[0].attempts, kind, error=BOOM, retriable=False, finished_at=now))
    assert store.finish(owner, outcomes, now) == []


def args_of(c: Any) -> list[Any]:
    """A claimed job's positional arguments (carried as JSON text to the worker)."""
    return json.loads(c.args_json) if hasattr(c, "args_json") else c.args


def kwargs_of(c: Any) -> dict[str, Any]:
    return json.loads(c.kwargs_json) if hasattr(c, "kwargs_json") else c.kwargs


def state(store: Store, job_id: int) -> str:
    rec = store.get(job_id)
    assert rec is not None
    return rec.state


def in_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released together; results in order (re-raises the first error)."""
    barrier = threading.Barrier(n)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: (barrier.wait(30), fn(i))[1], range(n), timeout=50))


# -- submitting and reading ----------------------------------------------------------------
def test_submit_returns_ids_in_order(store: Store) -> None:
    first = submit(store, *[spec(args=[i]) for i in range(5)])
    assert first == sorted(first) and len(set(first)) == 5
    assert all(isinstance(i, int) for i in first)
    # The one-by-one path (a unique key) keeps input order too.
    second = submit(store, spec(args=[5]), spec(args=[6], key="k"), spec(args=[7]))
    assert second == sorted(second) and second[0] > first[-1]
    assert [store.get(i).args for i in first + second] == [[i] for i in range(8)]
    assert store.count_jobs() == 8


NESTED_ARGS = [
    "héllo ✓ 😀",
    "50% of ? and %s",
    "nul\u0000inside",
    {"nested": [1, 2.5, None, True, {"deep": "ü"}]},
    10**30,
    -1.5e-300,
]
NESTED_KWARGS = {"ключ": ["значение", {"a": None, "b": []}], "emoji": "🎉", "empty": {}}


def test_get_record_fields_and_types(store: Store) -> None:
    now = T + 0.5
    (job_id,) = submit(
        store,
        spec(args=NESTED_ARGS, kwargs=NESTED_KWARGS, queue="q-1.x", priority=7, name="naïve ✓", timeout=2.5, retries=2),
        now=now,
    )
    rec = store.get(job_id)
    assert rec is not None
    assert (rec.id, rec.target, rec.name, rec.queue, rec.priority) == (job_id, ADD, "naïve ✓", "q-1.x", 7)
    assert rec.args == NESTED_ARGS and rec.kwargs == NESTED_KWARGS
    assert (rec.state, rec.attempts, rec.max_attempts, rec.timeout) == ("queued", 0, 3, 2.5)
    assert type(rec.created_at) is float and rec.created_at == now
    assert type(rec.run_at) is float and rec.run_at == now
    assert rec.started_at is None and rec.finished_at is None and rec.owner is None
    assert rec.result is None and rec.error is None and rec.errors == [] and rec.depends_on == []
    assert rec.key is None and rec.group_id is None and rec.cancel_requested is False
    assert isinstance(rec.priority, int) and isinstance(rec.attempts, int)

    (c,) = store.claim("sup-1", None, 1, now + 1, now + 31)
    assert (c.id, c.target, args_of(c), kwargs_of(c), c.attempts, c.timeout, c.queue) == (
        job_id,
        ADD,
        NESTED_ARGS,
        NESTED_KWARGS,
        1,
        2.5,
        "q-1.x",
    )
    result = {"out": NESTED_ARGS, "ü": NESTED_KWARGS}
    assert store.get(job_id).started_at is None  # claimed: no worker has started it yet
    done = Outcome(
        job_id,
        1,
        "succeeded",
        result_json=json.dumps(result),
        worker=4242,
        output="printed ✓\n",
        finished_at=now + 2,
        started_at=now + 1.5,
    )
    assert store.finish("sup-1", [done], now + 2) == []
    rec = store.get(job_id)
    assert rec.state == "succeeded" and rec.result == result and rec.error is None
    assert type(rec.started_at) is float and rec.started_at == now + 1.5  # the worker's own start
    assert type(rec.finished_at) is float and rec.finished_at == now + 2
    assert rec.owner == "sup-1" and rec.worker == 4242 and rec.attempts == 1
    assert store.output(job_id) == "printed ✓\n"
    # An integer clock is stored as a float time as well.
    (other,) = submit(store, spec(), now=1_700_000_000)
    assert type(store.get(other).created_at) is float


def test_get_states_and_counts_by_queue_and_state(store: Store) -> None:
    a, _, b, c = submit(store, spec(queue="a"), spec(queue="a"), spec(queue="b"), spec(queue="b", run_at=T + 60))
    assert store.get(a + b + c + 1000) is None and store.output(a) is None
    assert store.get_states([a, c, a + b + c + 1000]) == {a: "queued", c: "scheduled"}
    assert store.get_states([]) == {}
    store.claim("s", ["a"], 1, T, T + 30)
    counts = {q: {s: n for s, n in states.items() if n} for q, states in store.counts().items()}
    assert counts == {"a": {"queued": 1, "claimed": 1}, "b": {"queued": 1, "scheduled": 1}}


def test_list_jobs_newest_first_with_filters(store: Store) -> None:
    ids = submit(store, spec(queue="a"), spec(queue="b"), spec(queue="a"), spec(queue="a"))
    settle(store, ids[2])
    assert [r.id for r in store.list_jobs(None, None, 10)] == ids[::-1]
    assert [r.id for r in store.list_jobs(None, None, 2)] == ids[::-1][:2]
    assert [r.id for r in store.list_jobs(None, "a", 10)] == [ids[3], ids[2], ids[0]]
    assert [r.id for r in store.list_jobs("queued", "a", 10)] == [ids[3], ids[0]]
    assert [r.id for r in store.list_jobs("succeeded", None, 10)] == [ids[2]]
    assert store.list_jobs("failed", None, 10) == []


# -- claiming --------------------------------------------------------------------------------
def test_claim_order_priority_then_run_at_then_id(store: Store) -> None:
    ids = submit(
        store,
        spec(args=["low"], priority=-1),
        spec(args=["p0 late"], run_at=T - 1),
        spec(args=["p0 early"], run_at=T - 5),
        spec(args=["p5"], priority=5),
        spec(args=["p0 late again"], run_at=T - 1),
    )
    one_by_one = [args_of(store.claim("s", None, 1, T, T + 30)[0])[0] for _ in ids]
    assert one_by_one == ["p5", "p0 early", "p0 late", "p0 late again", "low"]
    assert store.claim("s", None, 1, T, T + 30) == []
    # A batch comes back in the same order.
    submit(store, spec(args=[1]), spec(args=[2], priority=3), spec(args=[3], priority=3))
    assert [args_of(c)[0] for c in store.claim("s", None, 10, T, T + 30)] == [2, 3, 1]


def test_claim_queue_filter_and_limit(store: Store) -> None:
    a, b, c = submit(store, spec(queue="a"), spec(queue="b"), spec(queue="c"))
    assert [j.id for j in store.claim("s", ["b"], 10, T, T + 30)] == [b]
    assert sorted(j.id for j in store.claim("s", ["a", "c", "zzz"], 10, T, T + 30)) == [a, c]
    assert store.claim("s", ["b"], 10, T, T + 30) == []
    submit(store, *[spec(args=[i]) for i in range(10)])
    assert store.claim("s", None, 0, T, T + 30) == []
    assert len(store.claim("s", None, 3, T, T + 30)) == 3
    assert {s: n for s, n in store.counts()["default"].items() if n} == {"queued": 7, "claimed": 3}
    assert len(store.claim("s", None, 100, T, T + 30)) == 7


def test_future_run_at_is_not_claimed_until_due(store: Store) -> None:
    (job_id,) = submit(store, spec(run_at=T + 100))
    assert state(store, job_id) == "scheduled"
    assert store.claim("s", None, 10, T, T + 30) == []
    assert not store.has_runnable(None, T)
    assert store.has_runnable(None, T + 100)
    (c,) = store.claim("s", None, 10, T + 100, T + 130)
    assert c.id == job_id and c.attempts == 1
    # A claim moves due scheduled jobs to queued first, and only due ones.
    x, y = submit(store, spec(run_at=T + 200, queue="later"), spec(run_at=T + 300, queue="later"))
    assert [c.id for c in store.claim("s", None, 10, T + 250, T + 280)] == [x]
    assert (state(store, x), state(store, y)) == ("claimed", "scheduled")
    assert store.counts()["later"] == {"claimed": 1, "scheduled": 1}


def test_two_claimers_never_get_the_same_job(opened: Callable[[], Store]) -> None:
    first = opened()
    ids = submit(first, *[spec(args=[i], priority=i % 3) for i in range(400)])
    stores = [first] + [opened() for _ in range(3)]

    def claimer(i: int) -> list[int]:
        got: list[int] = []
        while True:
            batch = stores[i].claim(f"sup-{i}", None, 1 + i * 3, T, T + 30)
            if not batch:
                return got
            got.extend(c.id for c in batch)

    per_claimer = in_threads(4, claimer)
    flat = [j for got in per_claimer for j in got]
    assert len(flat) == len(set(flat)), "a job was claimed twice"
    assert sorted(flat) == ids
    owners = {r.id: r.owner for r in first.list_jobs("claimed", None, 1000)}
    for i, got in enumerate(per_claimer):
        assert all(owners[j] == f"sup-{i}" for j in got)


def test_queue_limits_hold_across_concurrent_claimers(opened: Callable[[], Store]) -> None:
    first = opened()
    submit(first, *[spec(queue="lim") for _ in range(20)], *[spec(queue="free") for _ in range(4)])
    stores = [first] + [opened() for _ in range(3)]
    first.set_queue_limit("lim", 2, T)
    got = in_threads(4, lambda i: stores[i].claim(f"s{i}", None, 10, T, T + 30))
    flat = [c for batch in got for c in batch]
    assert len({c.id for c in flat}) == len(flat)
    assert sum(1 for c in flat if c.queue == "lim") == 2
    assert sum(1 for c in flat if c.queue == "free") == 4
    assert first.counts()["lim"]["claimed"] == 2


# -- finishing -------------------------------------------------------------------------------
def test_fenced_finish_rejects_wrong_owner_or_attempts(store: Store) -> None:
    (job_id,) = submit(store, spec())
    (c,) = store.claim("owner-a", None, 1, T, T + 30)
    before = store.get(job_id)
    for owner, attempts in (("owner-b", 1), ("owner-a", 2), ("owner-a", 0)):
        bad = Outcome(job_id, attempts, "succeeded", result_json="99", output="late", finished_at=T + 1)
        assert store.finish(owner, [bad], T + 1) == [job_id]
        assert store.finish(owner, [Outcome(job_id, attempts, "failed", error=BOOM)], T + 1) == [job_id]
    assert store.get(job_id) == before and store.output(job_id) is None
    assert store.finish("owner-a", [Outcome(job_id, 1, "succeeded", result_json='{"v": [1]}', output="out\n")], T + 2) == []
    rec = store.get(job_id)
    assert (rec.state, rec.result, rec.finished_at) == ("succeeded", {"v": [1]}, T + 2)
    assert store.output(job_id) == "out\n"
    # A second finish of the same attempt is rejected: the result stays.
    assert store.finish("owner-a", [Outcome(job_id, 1, "succeeded", result_json="0")], T + 3) == [job_id]
    assert store.get(job_id).result == {"v": [1]}


def test_nul_is_refused_before_the_store_and_other_text_round_trips(store: Store) -> None:
    """PostgreSQL TEXT cannot hold NUL: names and keys with one are refused at validation (on
    every backend alike; the worker strips NUL from output), and all other text round-trips."""
    for field in ("name", "key"):
        with pytest.raises(ValidationError) as info:
            validate_spec({"target": ADD, field: "a\x00b"}, 10**6)
        assert info.value.field == field
    text = "tabs\tand ✓ \u2028 \x7f \\ 'quotes' \"dq\" %s ? 😀\n" * 3
    (job_id,) = submit(store, spec(name=text[:60], key=text[:80]))
    assert (store.get(job_id).name, store.get(job_id).key) == (text[:60], text[:80])
    store.claim("s", None, 1, T, T + 30)
    store.set_progress("s", [ProgressUpdate(job_id, 1, 0.5, text)])
    assert store.get(job_id).progress_message == text
    assert store.finish("s", [Outcome(job_id, 1, "succeeded", result_json="1", output=text)], T + 1) == []
    assert store.output(job_id) == text


def test_failed_with_retries_left_requeues_later_and_records_the_error(store: Store) -> None:
    (job_id,) = submit(store, spec(retries=2, retry_backoff=10, retry_backoff_max=300))
    (c,) = store.claim("s", None, 1, T, T + 30)
    assert store.finish("s", [Outcome(job_id, 1, "failed", error=BOOM, worker=7, started_at=T + 0.5)], T + 1) == []
    rec = store.get(job_id)
    assert (rec.state, rec.attempts, rec.owner, rec.finished_at) == ("queued", 1, None, None)
    assert T + 1 + 5 <= rec.run_at <= T + 1 + 10  # backoff 10 s with jitter in [5, 10]
    assert rec.error["type"] == "ValueError"
    (err,) = rec.errors
    assert err == {"attempt": 1, **BOOM_DICT, "started_at": err["started_at"], "finished_at": iso(T + 1)}
    assert err["started_at"] == iso(T + 0.5)  # the worker's start of the attempt, for the timeline
    assert store.claim("s", None, 1, T + 2, T + 32) == []
    (again,) = store.claim("s", None, 1, rec.run_at, rec.run_at + 30)
    assert again.attempts == 2


def test_out_of_attempts_ends_failed(store: Store) -> None:
    a, b = submit(store, spec(retries=1, retry_backoff=0, queue="a"), spec(retries=5, queue="b"))
    for attempt in (1, 2):
        (c,) = store.claim("s", ["a"], 1, T + attempt, T + 30)
        assert c.attempts == attempt
        err = JobError(**{**BOOM_DICT, "message": f"boom {attempt}"})
        assert store.finish("s", [Outcome(a, attempt, "failed", error=err)], T + attempt) == []
    rec = store.get(a)
    assert (rec.state, rec.attempts, rec.finished_at) == ("failed", 2, T + 2)
    assert [(e["attempt"], e["message"]) for e in rec.errors] == [(1, "boom 1"), (2, "boom 2")]
    assert rec.error["message"] == "boom 2"
    # A non-retriable failure ends the job at once, retries left or not.
    store.claim("s", ["b"], 1, T, T + 30)
    assert store.finish("s", [Outcome(b, 1, "failed", error=BOOM, retriable=False)], T + 1) == []
    assert state(store, b) == "failed"


def test_released_outcome_returns_to_queued_without_counting_and_progress_is_fenced(store: Store) -> None:
    (job_id,) = submit(store, spec())
    store.claim("s", None, 1, T, T + 30)
    assert store.finish("s", [Outcome(job_id, 1, "released")], T + 1) == []
    rec = store.get(job_id)
    assert (rec.state, rec.attempts, rec.owner, rec.started_at) == ("queued", 0, None, None)
    (c,) = store.claim("s", None, 1, T + 2, T + 32)
    assert c.attempts == 1
    # Progress is fenced like finishes.
    store.set_progress("other", [ProgressUpdate(job_id, 1, 0.9, "no")])
    assert store.get(job_id).progress is None
    store.set_progress("s", [ProgressUpdate(job_id, 1, 0.5, "half ✓")])
    rec = store.get(job_id)
    assert (rec.progress, rec.progress_message) == (0.5, "half ✓")


def test_a_released_job_whose_cancel_was_requested_ends_cancelled(store: Store) -> None:
    (job_id,) = submit(store, spec())
    store.claim("s", None, 1, T, T + 30)
    assert store.cancel([job_id], T + 1) == {job_id: "cancelling"}
    assert store.finish("s", [Outcome(job_id, 1, "released")], T + 2) == []  # a drain ended it
    rec = store.get(job_id)
    assert (rec.state, rec.finished_at, rec.error["type"]) == ("cancelled", T + 2, "Cancelled")
    assert store.counts()["default"] == {"cancelled": 1}


# -- cancel and retry ------------------------------------------------------------------------
def test_cancel_queued_and_running(store: Store) -> None:
    queued, running, failing = submit(store, spec(queue="q"), spec(queue="r"), spec(queue="f"))
    assert store.cancel([queued, queued + 999], T) == {queued: "cancelled"}
    rec = store.get(queued)
    assert (rec.state, rec.finished_at, rec.error["type"]) == ("cancelled", T, "Cancelled")
    assert store.claim("s", ["q"], 1, T, T + 30) == []

    store.claim("s", ["r", "f"], 2, T, T + 30)
    assert store.cancel([running, failing], T + 1) == {running: "cancelling", failing: "cancelling"}
    assert state(store, running) == "claimed" and store.get(running).cancel_requested is True
    assert sorted(store.heartbeat("s", T + 2, T + 40)) == [running, failing]
    assert store.heartbeat("someone-else", T + 2, T + 40) == []
    cancelled = Outcome(running, 1, "cancelled", error={"type": "Cancelled", "message": "x", "traceback": ""})
    assert store.finish("s", [cancelled], T + 3) == []
    # A job that fails because it was being cancelled ends cancelled too, not retried.
    assert store.finish("s", [Outcome(failing, 1, "failed", error=BOOM)], T + 3) == []
    for job_id in (running, failing):
        rec = store.get(job_id)
        assert (rec.state, rec.error["type"], rec.finished_at) == ("cancelled", "Cancelled", T + 3)
    assert store.cancel([running], T + 4) == {running: "cancelled"}  # already finished: unchanged


def test_retry_failed_and_cancelled_jobs(store: Store) -> None:
    failed, cancelled, other_queue, ok = submit(store, spec(queue="a"), spec(queue="a"), spec(queue="b"), spec(queue="a"))
    settle(store, failed, "failed")
    settle(store, other_queue, "failed")
    store.cancel([cancelled], T)
    settle(store, ok)
    assert store.retry(None, T + 1, queue="a") == [failed]
    rec = store.get(failed)
    assert (rec.state, rec.finished_at, rec.owner, rec.attempts) == ("queued", None, None, 1)
    assert store.retry(None, T + 1) == [other_queue]
    assert store.retry([cancelled, ok], T + 1) == [cancelled]  # a succeeded job is not retried
    assert state(store, ok) == "succeeded"
    claimed = {c.id: c.attempts for c in store.claim("s", None, 10, T + 2, T + 30)}
    assert claimed == {failed: 2, cancelled: 1, other_queue: 2}


# -- dependencies ----------------------------------------------------------------------------
def test_dependencies_wait_until_every_one_succeeded(store: Store) -> None:
    a, b = submit(store, spec(queue="a"), spec(queue="b"))
    (c,) = submit(store, spec(queue="c", depends_on=[b, a]))
    rec = store.get(c)
    assert rec.state == "waiting" and rec.depends_on == [b, a]
    assert store.claim("s", ["c"], 1, T, T + 30) == []
    settle(store, a, result=1)
    assert state(store, c) == "waiting"
    settle(store, b, result=2)
    assert state(store, c) == "queued"
    assert [j.id for j in store.claim("s", ["c"], 1, T, T + 30)] == [c]
    # A dependency that already succeeded does not hold a new job back.
    (d,) = submit(store, spec(depends_on=[a]))
    assert state(store, d) == "queued"


def test_failed_dependency_cancels_dependents_transitively(store: Store) -> None:
    a, free = submit(store, spec(queue="a"), spec(queue="free"))
    (b,) = submit(store, spec(depends_on=[a]))
    (c,) = submit(store, spec(depends_on=[b]))
    (d,) = submit(store, spec(depends_on=[c, free]))
    settle(store, a, "failed")
    for job_id in (b, c, d):
        rec = store.get(job_id)
        assert rec.state == "cancelled" and rec.error["type"] == "DependencyFailed", (job_id, rec)
        assert rec.finished_at is not None
    assert str(a) in store.get(b).error["message"]
    assert state(store, free) == "queued"
    # Depending on a job that already failed cancels at once, naming it.
    (e,) = submit(store, spec(depends_on=[a]))
    rec = store.get(e)
    assert rec.state == "cancelled" and rec.error["type"] == "DependencyFailed" and str(a) in rec.error["message"]


def test_unknown_dependency_is_rejected_and_nothing_is_inserted(store: Store) -> None:
    (a,) = submit(store, spec())
    with pytest.raises(ValidationError) as info:
        store.submit([spec(args=[1]), spec(depends_on=[a, a + 1000])], T)
    assert info.value.field == "depends_on" and str(a + 1000) in str(info.value)
    assert store.count_jobs() == 1
    with pytest.raises(ValidationError):
        store.submit([spec(depends_on=[a + 1000])], T, group=True)
    assert store.count_jobs() == 1


def test_pass_results_prepends_dependency_results(store: Store) -> None:
    a, b = submit(store, spec(queue="a"), spec(queue="b"))
    settle(store, a, result=5)
    settle(store, b, result={"x": ["é", None]})
    (c,) = submit(store, spec(queue="c", depends_on=[a, b], pass_results=True, args=[10], kwargs={"k": 1}))
    (claimed,) = store.claim("s", ["c"], 1, T, T + 30)
    assert args_of(claimed) == [[5, {"x": ["é", None]}], 10] and kwargs_of(claimed) == {"k": 1}
    assert store.get(c).args == [10]  # the stored args are unchanged


def test_unique_key_returns_the_existing_unfinished_job(store: Store) -> None:
    subs, _ = store.submit([spec(key="nightly"), spec(key="nightly"), spec(key="other")], T)
    assert [s.existing for s in subs] == [False, True, False]
    assert subs[0].id == subs[1].id != subs[2].id
    (again,), _ = store.submit([spec(key="nightly", args=[9])], T)
    assert again.existing and again.id == subs[0].id
    assert store.count_jobs() == 2
    assert store.get(subs[0].id).key == "nightly"
    settle(store, subs[0].id)
    (fresh,), _ = store.submit([spec(key="nightly")], T)
    assert not fresh.existing and fresh.id not in (subs[0].id, subs[2].id)


def test_concurrent_submits_of_one_key_make_one_job(opened: Callable[[], Store]) -> None:
    stores = [opened() for _ in range(4)]
    subs = in_threads(4, lambda i: stores[i].submit([spec(key="once", args=[i])], T)[0][0])
    assert len({s.id for s in subs}) == 1
    assert sum(not s.existing for s in subs) == 1
    assert stores[0].count_jobs() == 1


# -- liveness --------------------------------------------------------------------------------
def test_requeue_lost_by_owner_and_the_late_finish_is_fenced(store: Store) -> None:
    a1, a2, b1 = submit(store, spec(queue="a"), spec(queue="a"), spec(queue="b"))
    store.claim("sup-a", ["a"], 10, T, T + 30)
    store.claim("sup-b", ["b"], 10, T, T + 30)
    assert sorted(store.requeue_lost(T + 1, owner="sup-a", reason="sup-a died")) == [a1, a2]
    for job_id in (a1, a2):
        rec = store.get(job_id)
        assert (rec.state, rec.owner, rec.attempts) == ("queued", None, 1)
        assert [(e["attempt"], e["type"], e["message"]) for e in rec.errors] == [(1, "SupervisorLost", "sup-a died")]
    assert state(store, b1) == "claimed"
    late = Outcome(a1, 1, "succeeded", result_json='"stale"')
    assert store.finish("sup-a", [late], T + 2) == [a1]
    assert state(store, a1) == "queued"
    taken = {c.id: c.attempts for c in store.claim("sup-c", ["a"], 10, T + 3, T + 33)}
    assert taken == {a1: 2, a2: 2}
    assert store.finish("sup-a", [late], T + 4) == [a1]
    assert store.finish("sup-c", [Outcome(a1, 2, "succeeded", result_json='"fresh"')], T + 4) == []
    assert store.finish("sup-a", [late], T + 5) == [a1]
    assert store.get(a1).result == "fresh"


def test_requeue_lost_by_expired_lease_and_heartbeat_renews_leases(store: Store) -> None:
    (job_id,) = submit(store, spec())
    store.claim("sup-a", None, 1, T, T + 10)
    assert store.requeue_lost(T + 5, expired_before=T + 5) == []
    assert store.requeue_lost(T + 11, expired_before=T + 11) == [job_id]
    rec = store.get(job_id)
    assert (rec.state, rec.attempts) == ("queued", 1)
    assert rec.errors[0]["type"] == "LeaseExpired"
    assert store.finish("sup-a", [Outcome(job_id, 1, "succeeded", result_json="1")], T + 12) == [job_id]
    assert store.requeue_lost(T + 12) == []  # neither owner nor expiry: nothing
    # A heartbeat renews the leases of its own running jobs (and its own heartbeat time) only.
    store.register_supervisor(SupervisorInfo("sup-a", "host-1", 123, 2, None, T, T))
    mine, theirs = submit(store, spec(queue="a"), spec(queue="b"))
    store.claim("sup-a", ["a"], 1, T, T + 10)
    store.claim("sup-b", ["b"], 1, T, T + 10)
    assert store.heartbeat("sup-a", T + 5, T + 60) == []
    assert store.requeue_lost(T + 20, expired_before=T + 20) == [theirs]
    assert state(store, mine) == "claimed"
    (sup,) = store.supervisors()
    assert sup.heartbeat_at == T + 5


def test_supervisors_register_list_unregister_prune(store: Store) -> None:
    assert store.supervisors() == []
    store.register_supervisor(SupervisorInfo("s1", "host-1", 101, 4, ["a", "b"], T, T, "/tmp/s1.lock"))
    store.register_supervisor(SupervisorInfo("s2", "hôst-2", 202, 1, None, T + 1, T + 1))
    got = {s.id: s for s in store.supervisors()}
    assert got["s1"] == SupervisorInfo("s1", "host-1", 101, 4, ["a", "b"], T, T, "/tmp/s1.lock")
    assert got["s2"] == SupervisorInfo("s2", "hôst-2", 202, 1, None, T + 1, T + 1, None)
    assert all(type(s.heartbeat_at) is float and type(s.started_at) is float for s in got.values())
    store.heartbeat("s2", T + 100, T + 130)
    assert store.prune_supervisors(T + 50) == ["s1"]
    assert [s.id for s in store.supervisors()] == ["s2"]
    store.register_supervisor(SupervisorInfo("s2", "hôst-2", 202, 1, None, T + 1, T + 200))  # re-registering: upsert
    assert [(s.id, s.heartbeat_at) for s in store.supervisors()] == [("s2", T + 200)]
    store.unregister_supervisor("s2")
    store.unregister_supervisor("never-was")
    assert store.supervisors() == []


# -- groups ----------------------------------------------------------------------------------
def test_groups(store: Store) -> None:
    ids, group_id = store.submit_stream(spec(queue="g"), iter([[i] for i in range(5)]), T, True, 10**6)
    assert group_id is not None and ids == sorted(ids) and len(ids) == 5
    assert store.group_jobs(group_id) == ids
    assert [store.get(i).group_index for i in ids] == [0, 1, 2, 3, 4]
    assert {store.get(i).group_id for i in ids} == {group_id}
    assert store.group_summary(group_id) == {"queued": 5}
    for i in (3, 0):
        settle(store, ids[i], result={"i": i})
    settle(store, ids[1], "failed")
    results = store.group_results(group_id)
    assert [(r[0], r[1], r[2]) for r in results] == [
        (ids[0], "succeeded", {"i": 0}),
        (ids[1], "failed", None),
        (ids[2], "queued", None),
        (ids[3], "succeeded", {"i": 3}),
        (ids[4], "queued", None),
    ]
    assert results[1].error.type == "ValueError" and results[0][3] is None
    assert store.group_summary(group_id) == {"succeeded": 2, "failed": 1, "queued": 2}
    # submit(group=True) makes a group of its own; streaming without a group makes none.
    subs, other = store.submit([spec(), spec()], T, group=True)
    assert other not in (None, group_id) and store.group_jobs(other) == [s.id for s in subs]
    plain, none = store.submit_stream(spec(), iter([[1]]), T, False, 10**6)
    assert none is None and store.get(plain[0]).group_id is None
    for unknown in ("g999999", "nonsense", ""):
        assert store.group_jobs(unknown) is None and store.group_summary(unknown) is None


def test_submit_stream_streams_many_and_a_bad_item_inserts_nothing(store: Store) -> None:
    ids, _ = store.submit_stream(spec(), (list([i]) for i in range(4500)), T, True, 10**6)
    assert ids == sorted(ids)
    assert len(set(ids)) == 4500 and store.count_jobs() == 4500
    assert store.get(ids[-1]).args == [4499]
    with pytest.raises(ValidationError):
        store.submit_stream(spec(), iter([[1], [object()]]), T, True, 10**6)
    with pytest.raises(ValidationError):
        store.submit_stream(spec(), iter([[1], ["x" * 200]]), T, False, 100)
    assert store.count_jobs() == 4500


# -- schedules -------------------------------------------------------------------------------
def sched(name: str, every: float = 60.0, next_run_at: float = T + 60, **kw: Any) -> Schedule:
    return Schedule(
        name,
        kw.pop("target", ADD),
        kw.pop("args", [1, "ü"]),
        kw.pop("kwargs", {"y": 2}),
        "default",
        None,
        every,
        next_run_at,
        **kw,
    )


def by_name(store: Store) -> dict[str, Schedule]:
    return {s.name: s for s in store.schedules()}


def test_schedules_upsert_and_list(store: Store) -> None:
    store.upsert_schedule(sched("b-every"))
    store.upsert_schedule(Schedule("a-cron", ADD, [], {}, "cronq", "*/5 * * * *", None, T + 300))
    for name in ("Zed", "_under", "Älpha"):
        store.upsert_schedule(sched(name))
    got = store.schedules()
    assert [s.name for s in got] == ["Zed", "_under", "a-cron", "b-every", "Älpha"]  # by name, code point order
    got = got[2:4]
    assert got[1] == sched("b-every", last_run_at=None)
    assert got[0].cron == "*/5 * * * *" and got[0].every is None and got[0].queue == "cronq"
    store.upsert_schedule(sched("b-every", next_run_at=T + 999))  # unchanged definition: keeps its time
    assert by_name(store)["b-every"].next_run_at == T + 60
    store.upsert_schedule(sched("b-every", every=30, next_run_at=T + 30))  # changed: takes the new one
    assert (by_name(store)["b-every"].every, by_name(store)["b-every"].next_run_at) == (30, T + 30)


def test_enqueue_due_schedules_once_per_due_time_and_missed_runs_collapse(store: Store) -> None:
    store.upsert_schedule(sched("tick"))
    assert store.enqueue_due_schedules(T + 30, next_run_after) == []
    (job_id,) = store.enqueue_due_schedules(T + 60, next_run_after)
    rec = store.get(job_id)
    assert (rec.name, rec.target, rec.args, rec.kwargs, rec.state) == ("tick", ADD, [1, "ü"], {"y": 2}, "queued")
    (s,) = store.schedules()
    assert (s.next_run_at, s.last_run_at) == (T + 120, T + 60)
    assert store.enqueue_due_schedules(T + 61, next_run_after) == []
    # Missed for 100 periods (every supervisor down): one run on return, not one per missed tick.
    assert len(store.enqueue_due_schedules(T + 60 * 100 + 5, next_run_after)) == 1
    assert store.count_jobs() == 2
    assert store.schedules()[0].next_run_at == T + 60 * 101


def test_racing_stores_enqueue_each_due_schedule_exactly_once(opened: Callable[[], Store]) -> None:
    stores = [opened() for _ in range(4)]
    for name in ("s1", "s2", "s3"):
        stores[0].upsert_schedule(sched(name))
    for round_ in range(1, 6):
        now = T + 60 * round_
        got = in_threads(4, lambda i, now=now: stores[i].enqueue_due_schedules(now, next_run_after))
        assert sum(len(ids) for ids in got) == 3, (round_, got)
    assert stores[0].count_jobs() == 15
    assert {s.next_run_at for s in stores[0].schedules()} == {T + 360}


def test_concurrent_upserts_of_one_new_schedule(opened: Callable[[], Store]) -> None:
    stores = [opened() for _ in range(4)]
    in_threads(4, lambda i: stores[i].upsert_schedule(sched("shared")))
    assert [s.name for s in stores[0].schedules()] == ["shared"]


# -- retention -------------------------------------------------------------------------------
def test_purge_older_than_never_touches_unfinished_jobs(store: Store) -> None:
    old_ok, old_failed, new_ok, queued, running, scheduled = submit(
        store,
        spec(queue="a"),
        spec(queue="b"),
        spec(queue="c"),
        spec(queue="q"),
        spec(queue="r"),
        spec(run_at=T + 10**6),
    )
    (waiting,) = submit(store, spec(depends_on=[queued]))
    settle(store, old_ok, now=T)
    settle(store, old_failed, "failed", now=T)
    settle(store, new_ok, now=T + 1000)
    store.claim("s", ["r"], 1, T, T + 10**7)
    assert store.output(old_ok) == "out"
    assert store.purge(T + 2000, ["succeeded"], older_than=1500) == 1
    assert store.get(old_ok) is None and store.output(old_ok) is None and store.get(old_failed) is not None
    assert store.purge(T + 10**6, ["succeeded", "failed", "cancelled", "queued", "claimed"], older_than=0) == 2
    assert store.get(old_failed) is None and store.get(new_ok) is None
    left = store.get_states([queued, running, scheduled, waiting])
    assert sorted(left.values()) == ["claimed", "queued", "scheduled", "waiting"]
    assert store.count_jobs() == 4


def test_purge_by_result_ttl_and_default_ttl(store: Store) -> None:
    own_short, own_long, plain = submit(store, spec(result_ttl=10, queue="a"), spec(result_ttl=1000, queue="b"), spec(queue="c"))
    for job_id in (own_short, own_long, plain):
        settle(store, job_id, now=T)
    assert store.purge(T + 5, ["succeeded"], None) == 0
    assert store.purge(T + 20, ["succeeded"], None) == 1  # no default: only a job's own ttl counts
    assert store.get(own_short) is None and store.get(plain) is not None
    assert store.purge(T + 200, ["succeeded"], None, default_ttl=100) == 1
    assert store.get(plain) is None and store.get(own_long) is not None
    assert store.purge(T + 2000, ["succeeded"], None, default_ttl=100) == 1
    assert store.count_jobs() == 0


# -- migrations ------------------------------------------------------------------------------
def test_opening_twice_is_idempotent_and_shares_jobs(opened: Callable[[], Store]) -> None:
    first = opened()
    ids = submit(first, spec(args=[1]), spec(args=[2]))
    second = opened()
    assert [second.get(i).args for i in ids] == [[1], [2]]
    (more,) = submit(second, spec(args=[3]))
    assert first.get(more).args == [3]
    first.close()
    third = opened()
    assert third.count_jobs() == 3


_FIRST_USE = """
import os, sys, time
from jobq.core.spec import JobSpec
from jobq.store import open_store
url, ready, go, token = sys.argv[1:5]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
store = open_store(url)
store.submit([JobSpec(target="tests.tasks:add", args=[token])], time.time())
"""


@pytest.mark.timeout(90)
def test_concurrent_first_use_by_several_processes(any_db: str, tmp_path: Path) -> None:
    # Every process imports first; then all open the fresh database at the same moment.
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_USE, any_db, str(ready[i]), str(go), f"p{i}"],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        wait_for(lambda: all(r.exists() for r in ready), timeout=60, what="every process to be ready")
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    store = open_store(any_db)
    try:
        assert sorted(r.args[0] for r in store.list_jobs(None, None, 100)) == [f"p{i}" for i in range(4)]
    finally:
        store.close()


# -- issue 15: claimed until a worker starts it ----------------------------------------------
def test_a_worker_start_makes_a_claimed_job_running_fenced_on_owner_and_attempt(store: Store) -> None:
    a, b = submit(store, spec(), spec())
    assert {c.id for c in store.claim("sup-1", None, 2, T, T + 30)} == {a, b}
    assert (state(store, a), store.get(a).worker, store.get(a).started_at) == ("claimed", None, None)
    assert store.busy_workers() == {}  # nothing started: no worker is busy
    assert store.start("sup-2", [JobStart(a, 1, 4242, T + 1)]) == []  # not its owner
    assert store.start("sup-1", [JobStart(a, 2, 4242, T + 1)]) == []  # not this attempt
    assert state(store, a) == "claimed"
    assert store.start("sup-1", [JobStart(a, 1, 4242, T + 1)]) == [a]
    rec = store.get(a)
    assert (rec.state, rec.worker, rec.started_at) == ("running", 4242, T + 1)
    assert store.counts()["default"] == {"claimed": 1, "running": 1}
    assert store.busy_workers() == {"sup-1": 1}
    assert store.start("sup-1", [JobStart(a, 1, 9999, T + 5)]) == []  # started once: never again
    # A running job keeps the start written; a claimed one takes the start its outcome brings.
    assert store.finish("sup-1", [Outcome(a, 1, "succeeded", result_json="1", worker=4242, finished_at=T + 3)], T + 3) == []
    ok = Outcome(b, 1, "succeeded", result_json="2", worker=4243, finished_at=T + 4, started_at=T + 3.5)
    assert store.finish("sup-1", [ok], T + 4) == []
    assert (store.get(a).started_at, store.get(b).started_at, store.get(b).worker) == (T + 1, T + 3.5, 4243)
    assert store.counts()["default"] == {"succeeded": 2}


def test_cancel_of_a_claimed_job_is_a_request_its_supervisor_answers(store: Store) -> None:
    (job,) = submit(store, spec())
    store.claim("sup-1", None, 1, T, T + 30)
    assert store.cancel([job], T + 1) == {job: "cancelling"}
    assert state(store, job) == "claimed" and store.get(job).cancel_requested is True
    assert store.heartbeat("sup-1", T + 2, T + 40) == [job]  # the supervisor learns of it
    withdrawn = Outcome(job, 1, "cancelled", error=JobError("Cancelled", "cancelled by request"), retriable=False)
    assert store.finish("sup-1", [withdrawn], T + 2) == []
    rec = store.get(job)
    assert (rec.state, rec.started_at, rec.worker) == ("cancelled", None, None)  # it never started


def test_a_job_taken_back_from_a_dead_supervisor_keeps_its_place_in_line(store: Store) -> None:
    early, later = submit(store, spec(), spec(), now=T)
    assert {c.id for c in store.claim("sup-dead", None, 1, T, T + 30)} == {early}
    store.start("sup-dead", [JobStart(early, 1, 4242, T + 1)])
    newer = submit(store, spec(), spec(), now=T + 50)
    assert store.requeue_lost(T + 100, owner="sup-dead", reason="gone") == [early]
    rec = store.get(early)
    assert (rec.state, rec.run_at, rec.owner) == ("queued", T, None)
    # First in line again: before the one submitted with it and those submitted since.
    assert [c.id for c in store.claim("sup-2", None, 1, T + 100, T + 130)] == [early]
    assert [c.id for c in store.claim("sup-2", None, 3, T + 100, T + 130)] == [later, *newer]
