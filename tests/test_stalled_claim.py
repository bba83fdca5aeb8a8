"""A claim that stalls (a link cut mid-claim on PostgreSQL, a long wait for SQLite's write lock)
never hands out a job whose lease it committed already past. Seen in the namespaced-hosts
test: a job claimed by the host whose link came back was taken back as lost at once and ran
twice. Two real connections on one SQLite file, interleaved by hand: one holds the write lock
while the other claims."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import jobq

pytestmark = pytest.mark.timeout(60)

LEASE_SECONDS = 0.3
STALL_SECONDS = 0.6  # longer than the lease: the claim's lease is past when it commits


def _hold_write_lock(path: str, locked: threading.Event, seconds: float) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_claim_that_waited_past_its_lease_keeps_its_jobs_and_they_stay_its_own(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    job = q.submit("tests.tasks:add", (1, 2))
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(db, locked, STALL_SECONDS))
    holder.start()
    try:
        assert locked.wait(10)
        now = time.time()
        claimed = q.store.claim("sup-a", None, 1, now, now + LEASE_SECONDS)
    finally:
        holder.join(10)
    assert [j.id for j in claimed] == [job.id]
    # Another supervisor's sweep right after: a lease committed already past would hand the
    # job back to the queue while sup-a's worker runs it (it would run twice).
    swept_at = time.time()
    assert q.store.requeue_lost(swept_at, expired_before=swept_at) == []
    record = q.record(job.id)
    assert record.state == "claimed" and record.owner == "sup-a"
    with sqlite3.connect(db) as conn:
        (lease,) = conn.execute("SELECT lease_expires_at FROM jobs WHERE id=?", (job.id,)).fetchone()
    assert lease > swept_at


def test_a_stalled_claim_drops_a_job_another_supervisor_took_back_meanwhile(tmp_path: Path) -> None:
    """The stalled claim's own renewal finds the job no longer its own: it is not handed out."""
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    job = q.submit("tests.tasks:add", (1, 2))
    store = q.store
    took_back: list[int] = []
    real_write = store._write  # type: ignore[attr-defined]
    writes = 0

    def write(fn):  # type: ignore[no-untyped-def]
        # After the claim commits (a stale lease, as after a stall) and before its renewal,
        # a second connection (another supervisor) sweeps lost leases.
        nonlocal writes
        result = real_write(fn)
        writes += 1
        if writes == 1:
            time.sleep(LEASE_SECONDS)  # the claim took longer than its lease
            other = jobq.Queue(db).store
            took_back.extend(other.requeue_lost(time.time(), expired_before=time.time()))
        return result

    store._write = write  # type: ignore[attr-defined]
    now = time.time()
    claimed = store.claim("sup-a", None, 1, now, now + LEASE_SECONDS)
    assert took_back == [job.id]
    assert claimed == []
    assert q.record(job.id).state == "queued"
