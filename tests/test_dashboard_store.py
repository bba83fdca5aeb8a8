"""The store's dashboard reads and figures on both backends, and the indexes behind them."""

from __future__ import annotations

import sqlite3
import time

import jobq
from jobq.core.models import JobError, Outcome, OutcomeKind
from jobq.store import queries as Q
from jobq.store.sql_dashboard import BUCKETS, OLDEST_QUEUED


def _run(q: jobq.Queue, owner: str, kinds: list[str], queue: str = "default") -> list[int]:
    """Claim jobs and end them with the given outcome kinds, as a supervisor would."""
    now = time.time()
    claimed = q.store.claim(owner, [queue], len(kinds), now, now + 60)
    assert len(claimed) == len(kinds)
    outcomes = []
    for job, kind in zip(claimed, kinds, strict=True):
        error = None if kind == "succeeded" else JobError("E", "m")
        outcomes.append(
            Outcome(
                job.id,
                job.attempts,
                OutcomeKind(kind),
                result_json="1" if kind == "succeeded" else None,
                error=error,
                retriable=False,
                finished_at=time.time(),
                started_at=now,  # the worker's own start, as its outcome brings it
            )
        )
    assert q.store.finish(owner, outcomes, time.time()) == []
    q.store.flush_figures()  # a process writes its figures at most once a second: now
    return [j.id for j in claimed]


def test_jobs_page_filters_and_cursor(any_db: str) -> None:
    q = jobq.Queue(any_db)
    a = [q.submit("tests.tasks:add", (i,), queue="qa", name="n1").id for i in range(5)]
    b = [q.submit("tests.tasks:echo", queue="qb", name="n2").id for i in range(3)]
    s = q.store
    assert [r.id for r in s.jobs_page(limit=100)] == sorted(a + b, reverse=True)
    assert [r.id for r in s.jobs_page(queue="qa", limit=2)] == sorted(a, reverse=True)[:2]
    assert [r.id for r in s.jobs_page(queue="qa", before=a[3], limit=10)] == sorted(a[:3], reverse=True)
    assert [r.id for r in s.jobs_page(target="tests.tasks:echo")] == sorted(b, reverse=True)
    assert [r.id for r in s.jobs_page(name="n1", state="queued", limit=10)] == sorted(a, reverse=True)
    assert s.jobs_page(state="failed") == []
    assert set(s.oldest_queued(["qa", "qb", "none"])) == {"qa", "qb"}


def test_counters_survive_purge_retry_and_delete(any_db: str) -> None:
    q = jobq.Queue(any_db)
    q.submit_many("tests.tasks:add", [(i,) for i in range(6)])
    ids = _run(q, "sup-1", ["succeeded"] * 4 + ["failed", "cancelled"])
    s = q.store
    hist = s.histograms()["default"]
    assert hist[0] == 6 and len(hist[3]) == len(BUCKETS) and hist[3][-1] <= 6 and hist[4][-1] <= 6
    minutes = {k: n for _, k, n in s.finished_by_minute(int(time.time() // 60) - 2)}
    assert minutes == {"succeeded": 4, "failed": 1, "cancelled": 1}
    assert s.busy_workers() == {}
    q.retry(ids[4])
    assert s.job_totals()[("default", "failed")] == (0, 1)
    q.submit("tests.tasks:add", (9,), queue="other")
    _run(q, "sup-1", ["failed"], queue="other")
    assert q.retry(failed=True, queue="other") and s.job_totals()[("other", "failed")] == (0, 1)
    assert s.delete_jobs([ids[0], ids[4]]) == [ids[0]]  # the retried one is queued again: kept
    assert q.purge(older_than=0) == 4
    totals = s.job_totals()
    assert totals[("default", "succeeded")] == (4, 0) and totals[("default", "cancelled")] == (1, 0)
    now_minute = int(time.time() // 60)
    assert s.compact_stats(now_minute + 5) > 0  # minutes folded into their hour
    assert s.histograms()["default"] == hist  # folded, not lost
    # Minutes are gone; an hour row remains, at its hour's first minute (which is now_minute - 1
    # or later when this runs in an hour's first two minutes).
    assert all(m % 60 == 0 for m, _, _ in s.finished_by_minute(now_minute - 1))
    hour = now_minute // 60 * 60
    by_hour = {(m, k): n for m, k, n in s.finished_by_minute(hour - 60, bucket=60, queue="default")}
    assert by_hour == {(hour, "succeeded"): 4, (hour, "failed"): 1, (hour, "cancelled"): 1}
    assert s.compact_stats(now_minute + 5) == 0  # nothing left to fold
    assert s.compact_stats(now_minute + 5, keep_hours_from=now_minute + 120) > 0  # hours past the week: into minute 0
    assert s.histograms()["default"] == hist
    assert s.finished_by_minute(1, bucket=60) == []


def test_figures_by_bucket_and_queue_over_a_week(any_db: str) -> None:
    """Hourly rows (folded minutes) and the newest minutes add up per bucket, per queue."""
    q = jobq.Queue(any_db)
    q.submit_many("tests.tasks:add", [(i,) for i in range(3)], queue="qa")
    q.submit_many("tests.tasks:add", [(i,) for i in range(2)], queue="qb")
    _run(q, "sup-1", ["succeeded", "failed", "succeeded"], queue="qa")
    _run(q, "sup-1", ["failed", "failed"], queue="qb")
    s = q.store
    now_minute = int(time.time() // 60)
    s.compact_stats(now_minute)  # the jobs ended this minute: nothing older to fold yet
    both = {(k): n for _, k, n in s.finished_by_minute(now_minute - 7 * 24 * 60, bucket=60)}
    assert both == {"succeeded": 2, "failed": 3}
    only_qb = {(k): n for _, k, n in s.finished_by_minute(now_minute - 60, bucket=15, queue="qb")}
    assert only_qb == {"failed": 2}
    assert s.finished_by_minute(now_minute - 60, queue="nothing") == []


def test_search_over_arguments_and_results(any_db: str) -> None:
    q = jobq.Queue(any_db)
    a = q.submit("tests.tasks:echo", ("Needle in args",), delay="1h")
    b = q.submit("tests.tasks:echo", (), {"text": "100% sure_thing"}, delay="1h")
    c = q.submit("tests.tasks:echo", ("plain",))
    _run(q, "sup-1", ["succeeded"])  # its result is "1"
    s = q.store
    assert [r.id for r in s.jobs_page(contains="needle")] == [a.id]  # any case
    assert [r.id for r in s.jobs_page(contains="100%")] == [b.id]  # % and _ are plain text
    assert s.jobs_page(contains="100_") == []
    assert [r.id for r in s.jobs_page(contains="sure_thing", queue="default")] == [b.id]
    assert c.id in [r.id for r in s.jobs_page(contains="1")]  # the result
    assert s.jobs_page(contains="needle", state="succeeded") == []


def test_fenced_out_finishes_are_not_counted(any_db: str) -> None:
    q = jobq.Queue(any_db)
    job = q.submit("tests.tasks:add", (1,))
    now = time.time()
    (claimed,) = q.store.claim("sup-a", None, 1, now, now + 60)
    late = Outcome(claimed.id, claimed.attempts, OutcomeKind.SUCCEEDED, result_json="2", finished_at=now)
    assert q.store.finish("sup-b", [late], now) == [job.id]
    q.store.flush_figures()
    assert q.store.histograms() == {}


def _plan(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


def test_dashboard_queries_use_indexes_and_leave_the_claim_alone(tmp_path) -> None:
    db = str(tmp_path / "jobs.db")
    jobq.Queue(db)
    conn = sqlite3.connect(db)
    page = "SELECT * FROM jobs WHERE id > 0 AND {} ORDER BY id DESC LIMIT 50"
    queries = [
        (page.format("queue=? AND id<?"), ("q", 5), "jobs_list_queue"),
        (page.format("target=?"), ("t:f",), "jobs_list_target"),
        (page.format("name=?"), ("n",), "jobs_list_name"),
        (page.format("state=?"), ("failed",), "jobs_failed_id"),
        (page.format("state=?"), ("cancelled",), "jobs_cancelled_id"),
        (OLDEST_QUEUED, ("q", "q"), "jobs_claim"),
        (OLDEST_QUEUED, ("q", "q"), "jobs_partition"),
        (Q.BUSY_WORKERS, (), "jobs_held"),
        ("SELECT job_id FROM job_deps WHERE depends_on=? ORDER BY job_id", (1,), "job_deps_reverse"),
        # the list's indexes never serve the job path: a claim of `-q NAME`, running by queue
        (Q.PICK.format(queues="AND queue IN (?)", lock=""), (1.0, "q", 5), "jobs_claim"),
        (Q.HELD_BY_QUEUE.format(marks="?"), ("q",), "jobs_held"),
    ]
    for sql, params, index in queries:
        plan = _plan(conn, sql, params)
        assert any(index in step for step in plan), (sql, plan)


def test_a_paused_schedule_is_never_due_until_resumed(any_db: str) -> None:
    q = jobq.Queue(any_db)
    q.schedule("tick", "tests.tasks:add", (1,), every="1s")
    s = q.store
    assert s.pause_schedule("tick", time.time()) and not s.pause_schedule("nope", time.time())
    assert s.paused_schedules() == {"tick"}
    assert s.enqueue_due_schedules(time.time() + 3600, lambda sched, now: now + 1) == []
    assert s.resume_schedule("tick", time.time() - 1) and not s.resume_schedule("tick", 0)
    assert len(s.enqueue_due_schedules(time.time(), lambda sched, now: now + 1)) == 1
