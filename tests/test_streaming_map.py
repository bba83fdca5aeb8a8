"""``q.map`` over an iterable: the caller's iterable is read outside every write transaction,
in chunks of short transactions; a retried write never re-reads it; a group whose submitter
stops mid-stream is either aborted (an exception in the submitter) or left open, and
``Group.join`` says so instead of misreading it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobq
from jobq.core.errors import GroupIncomplete, ValidationError
from tests.conftest import REPO, _env, wait_for

pytestmark = pytest.mark.timeout(90)


def test_a_slow_generator_does_not_hold_the_write_lock_while_it_waits(queue: jobq.Queue, db_path: str) -> None:
    reached, gate = threading.Event(), threading.Event()

    def items() -> Iterator[int]:
        yield from range(5)
        reached.set()
        gate.wait(20)  # the caller's code is slow here: no lock may be held meanwhile
        yield from range(5, 10)

    out: list[jobq.Group] = []
    mapper = threading.Thread(target=lambda: out.append(queue.map("tests.core_tasks:noop", items())))
    mapper.start()
    try:
        assert reached.wait(20)
        other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
        other.execute("PRAGMA busy_timeout = 0")
        other.execute("BEGIN IMMEDIATE")  # "database is locked" while a map held the lock
        other.execute("ROLLBACK")
        other.close()
        assert queue.submit("tests.core_tasks:noop", args=(99,)).state == "queued"
    finally:
        gate.set()
        mapper.join(20)
    (group,) = out
    assert len(group) == 10 and group.id is not None
    assert [queue.record(i).args for i in group.job_ids] == [[i] for i in range(10)]


def test_a_write_retried_after_a_lock_wait_does_not_lose_items(pg_url: str) -> None:
    """PostgreSQL re-runs a write transaction that hit a lock timeout: it must not read the
    caller's iterator again (which would skip the items the failed attempt consumed)."""
    import psycopg

    url = pg_url + "&options=-c%20lock_timeout%3D100"
    q = jobq.Queue(url)
    schema = pg_url.rsplit("schema=", 1)[1]
    locker = psycopg.connect(pg_url.split("?")[0])
    locker.execute(f'LOCK TABLE "{schema}".jobs IN EXCLUSIVE MODE')  # inserts wait behind it
    releaser = threading.Timer(0.6, locker.rollback)
    releaser.start()
    try:
        group = q.map("tests.core_tasks:noop", (i for i in range(6000)))
    finally:
        releaser.join()
        locker.close()
    assert len(group) == 6000
    assert q.store.count_jobs() == 6000
    assert [q.record(group.job_ids[i]).args for i in (0, 1999, 2000, 5999)] == [[0], [1999], [2000], [5999]]


def test_a_bad_item_after_the_first_chunks_aborts_the_group(queue: jobq.Queue) -> None:
    def items() -> Iterator[object]:
        yield from range(7000)
        yield object()  # not JSON

    with pytest.raises(ValidationError) as info:
        queue.map("tests.core_tasks:noop", items())
    assert "item 7000" in str(info.value)
    (group_id,) = {queue.record(i).group_id for i in range(1, 4001)}
    info_row = queue.store.group_info(group_id)
    assert info_row is not None and info_row.status == "aborted"
    counts = queue.group(group_id).counts()
    assert counts == {"cancelled": info_row.size}  # nothing ran: every submitted item was cancelled
    with pytest.raises(jobq.JobFailed) as failed:
        queue.group(group_id).join(timeout=10)
    assert failed.value.error_type == "GroupAborted" and failed.value.index == 0


def test_a_bad_item_among_the_first_two_chunks_stores_nothing(queue: jobq.Queue) -> None:
    with pytest.raises(ValidationError):
        queue.map("tests.core_tasks:noop", iter([*range(3000), object()]))
    assert queue.store.count_jobs() == 0


MAPPER = """
import sys, threading
import jobq
q = jobq.Queue(sys.argv[1])
def items():
    yield from range(4500)
    print("streamed", flush=True)
    threading.Event().wait()  # stalls for ever: the test kills this process
q.map("tests.core_tasks:noop", items())
"""


def test_a_submitter_killed_mid_stream_leaves_an_open_group_that_join_reports_incomplete(
    db_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapper = subprocess.Popen([sys.executable, "-c", MAPPER, db_path], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert mapper.stdout is not None and mapper.stdout.readline().strip() == "streamed"
        q = jobq.Queue(db_path)
        wait_for(lambda: q.store.count_jobs() == 2000, 20, what="the first chunk to be stored")
        os.kill(mapper.pid, signal.SIGKILL)
        mapper.wait(10)
    finally:
        if mapper.poll() is None:
            mapper.kill()
            mapper.wait()
    monkeypatch.setenv("JOBQ_LEASE_SECONDS", "1")
    q = jobq.Queue(db_path)
    group = q.group("g1")
    assert q.store.group_info("g1").status == "open"
    # What was submitted runs: never lost, never half-visible.
    with jobq.Supervisor(q, concurrency=2):
        started = time.monotonic()
        with pytest.raises(GroupIncomplete) as info:
            group.join(timeout=60)
    assert info.value.submitted == 2000
    assert q.group("g1").counts() == {"succeeded": 2000}
    assert time.monotonic() - started < 60
