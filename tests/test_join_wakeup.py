"""``Job.join`` on SQLite wakes when another connection commits (``PRAGMA data_version``)
instead of sleeping out its whole back-off step: ``SQLiteStore.wait_for_commit``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import jobq
from jobq.store import open_store

pytestmark = pytest.mark.timeout(60)


def test_a_commit_by_another_connection_ends_the_wait(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    waiter, writer = open_store(db), jobq.Queue(db)
    # A join looks for commits in its first, short waits only (a long one sleeps): here, in
    # a 30 s wait, so that nothing but a commit can end it within the test's bound.
    waiter.commit_poll_until_seconds = 60.0  # type: ignore[attr-defined]
    done = threading.Event()

    def wait() -> None:
        waiter.wait_for_commit(30.0)  # only a commit can end it within the test's bound
        done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    deadline = time.monotonic() + 10
    while not done.is_set() and time.monotonic() < deadline:
        writer.submit("tests.tasks:add", (1, 2))  # a commit on another connection
        done.wait(0.01)
    thread.join(30)
    waiter.close()
    assert done.is_set(), "the wait did not end on another connection's commit"


def test_without_commits_the_wait_lasts_its_timeout(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "q.db"))
    for timeout in (0.0008, 0.05):  # a short wait (looking for commits) and a long one (asleep)
        t0 = time.monotonic()
        store.wait_for_commit(timeout)
        assert time.monotonic() - t0 >= timeout
    store.close()
