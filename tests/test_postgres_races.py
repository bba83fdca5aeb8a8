"""Races on PostgreSQL, interleaved by hand over two connections: one transaction is held
open at the critical point while the other runs, then released.

Under READ COMMITTED each statement sees what committed before it began; a transition is
only safe when the statement that writes it carries its fence (or runs under a row lock
taken with the fence)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from jobq.core.models import JobError, Outcome, OutcomeKind
from jobq.core.spec import JobSpec, validate_spec
from jobq.store import open_store
from jobq.store.postgres import PostgresStore
from jobq.store.rows import claimed_jobs

pytestmark = pytest.mark.timeout(60)
T = 1_700_000_000.0


def spec(**kw: Any) -> JobSpec:
    return validate_spec({"target": "tests.core_tasks:noop", **kw}, 10**6)


def backend_waits_on_a_lock(observer: PostgresStore, pid: int) -> bool:
    rows = observer._read("SELECT 1 FROM pg_stat_activity WHERE pid=? AND wait_event_type='Lock'", (pid,))
    return bool(rows)


def run_blocked(store: PostgresStore, fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any], list[int]]:
    """Run ``fn`` in a thread of its own (its own connection); returns the thread, a box for
    its result and a box for its backend pid."""
    result: list[Any] = []
    pid: list[int] = []

    def body() -> None:
        pid.append(store._conn().raw.info.backend_pid)
        result.append(fn())

    thread = threading.Thread(target=body)
    thread.start()
    return thread, result, pid


def wait_until_blocked(observer: PostgresStore, pid_box: list[int]) -> None:
    deadline = time.monotonic() + 20
    while not (pid_box and backend_waits_on_a_lock(observer, pid_box[0])):
        assert time.monotonic() < deadline, "the other transaction never waited on the row lock"
        time.sleep(0.01)


def test_a_stale_finish_cannot_overwrite_a_job_requeued_and_claimed_by_another_supervisor(pg_url: str) -> None:
    a, b, observer = open_store(pg_url), open_store(pg_url), open_store(pg_url)
    assert isinstance(a, PostgresStore) and isinstance(b, PostgresStore) and isinstance(observer, PostgresStore)
    (sub,), _ = a.submit([spec()], T)
    (claimed,) = a.claim("sup-1", None, 1, T, T + 30)
    assert claimed.attempts == 1

    conn_b = b._conn()
    with conn_b.raw.transaction():
        # B: sup-1 is taken for dead; its job is requeued and claimed by sup-2, not yet committed.
        assert b._requeue_lost(conn_b, T + 40, "sup-1", None, "test: sup-1 lost") == [sub.id]
        (again,) = claimed_jobs(b._claim(conn_b, "sup-2", None, 1, T + 40, T + 70, False))
        assert again.attempts == 2
        # A: sup-1's late failure arrives meanwhile, and must wait for B's row lock.
        late = Outcome(sub.id, 1, OutcomeKind.FAILED, error=JobError("ValueError", "late"), retriable=False)
        thread, result, pid = run_blocked(a, lambda: a.finish("sup-1", [late], T + 41))
        wait_until_blocked(observer, pid)
    thread.join(20)
    assert result == [[sub.id]]  # the fence rejected the stale finish
    record = observer.get(sub.id)
    assert (record.state, record.owner, record.attempts) == ("claimed", "sup-2", 2)


def test_a_dependent_submitted_while_its_dependency_finishes_is_released(pg_url: str) -> None:
    a, b, observer = open_store(pg_url), open_store(pg_url), open_store(pg_url)
    assert isinstance(a, PostgresStore) and isinstance(b, PostgresStore) and isinstance(observer, PostgresStore)
    (dep,), _ = a.submit([spec()], T)
    (claimed,) = a.claim("sup-1", None, 1, T, T + 30)

    conn_b = b._conn()
    with conn_b.raw.transaction():
        # B: a job depending on the running one, inserted (and its dependency share-locked).
        dependent = b._insert_one(conn_b, spec(depends_on=[dep.id]), T + 1, None, 0)
        # A: the dependency succeeds meanwhile; its UPDATE waits for B's share lock.
        done = Outcome(dep.id, claimed.attempts, OutcomeKind.SUCCEEDED, result_json="1")
        thread, result, pid = run_blocked(a, lambda: a.finish("sup-1", [done], T + 2))
        wait_until_blocked(observer, pid)
    thread.join(20)
    assert result == [[]]
    assert observer.get(dep.id).state == "succeeded"
    assert observer.get(dependent.id).state == "queued"  # not left waiting for ever
