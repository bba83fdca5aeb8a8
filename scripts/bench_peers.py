"""The SQLite-side peers of scripts/bench.py (issue 5), each on the workload ``add(x) -> x + 1``:
``multiprocessing.Pool`` (``apply_async`` one by one, and ``map``), a bare SQLite claim/complete
loop in batches of ``SQLITE_BATCH``, Huey on SQLite with process workers, and RQ on Redis.

Not run on its own: ``python scripts/bench.py --only drain,submit``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import bench_tasks
from bench_common import FORK, INSTALL_HINT, TARGET, _end_process, redis_unreachable, shielded

SQLITE_BATCH = 32


# -- peers: multiprocessing.Pool -------------------------------------------------------------
def pool_apply_async(n: int, workers: int) -> float:
    t0 = time.perf_counter()
    with FORK.Pool(workers) as pool:
        pending = [pool.apply_async(bench_tasks.add, (i,)) for i in range(n)]
        for r in pending:
            r.get(600)
        elapsed = time.perf_counter() - t0
    return elapsed


def pool_map(n: int, workers: int) -> float:
    t0 = time.perf_counter()
    with FORK.Pool(workers) as pool:
        results = pool.map(bench_tasks.add, range(n))
        elapsed = time.perf_counter() - t0
    assert results[-1] == n
    return elapsed


# -- peers: a bare SQLite job table ----------------------------------------------------------
def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def sqlite_insert(path: str, n: int) -> float:
    """Create the bare job table and bulk-insert ``n`` jobs in one transaction; seconds."""
    conn = _sqlite_connect(path)
    conn.executescript(
        """CREATE TABLE jobs (id INTEGER PRIMARY KEY, target TEXT NOT NULL, args TEXT NOT NULL,
               state TEXT NOT NULL DEFAULT 'queued', owner INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
               result TEXT, started_at REAL, finished_at REAL);
           CREATE INDEX jobs_queued ON jobs(id) WHERE state = 'queued';"""
    )
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO jobs(target, args) VALUES (?, ?)", ((TARGET, json.dumps([i])) for i in range(n)))
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def sqlite_insert_jobq_rows(path: str, jobq_db: str, n: int) -> float:
    """Bulk-insert ``n`` copies of a row that jobq stored in ``jobq_db`` (its arguments varied as
    jobq's are) into a bare copy of jobq's ``jobs`` table, its indexes included, in one
    transaction: what jobq's bulk submit would cost with nothing of jobq's own; seconds."""
    src = sqlite3.connect(f"file:{jobq_db}?mode=ro", uri=True)
    ddl = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'jobs' AND sql IS NOT NULL ORDER BY type = 'index'"
        )
    ]
    cur = src.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT 1")
    columns = [c[0] for c in cur.description]
    row = cur.fetchone()
    src.close()
    values = dict(zip(columns, row, strict=True))
    del values["id"]
    names = list(values)
    at = names.index("args")
    before, after = tuple(values[c] for c in names[:at]), tuple(values[c] for c in names[at + 1 :])
    conn = _sqlite_connect(path)
    for sql in ddl:
        conn.execute(sql)
    insert = f"INSERT INTO jobs({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert, (before + (json.dumps([i]),) + after for i in range(n)))
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def _sqlite_worker(path: str, slot: int, ends: Any) -> None:
    conn = _sqlite_connect(path)
    functions: dict[str, Callable[..., Any]] = {}
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "UPDATE jobs SET state='running', owner=?, attempts=attempts+1, started_at=? WHERE id IN "
            "(SELECT id FROM jobs WHERE state='queued' ORDER BY id LIMIT ?) RETURNING id, target, args",
            (slot, time.time(), SQLITE_BATCH),
        ).fetchall()
        conn.execute("COMMIT")
        if not rows:
            break
        done = []
        for job_id, target, args in rows:
            fn = functions.get(target)
            if fn is None:
                module, name = target.split(":")
                fn = functions[target] = getattr(__import__(module), name)
            done.append((json.dumps(fn(*json.loads(args))), time.time(), job_id, slot))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE jobs SET state='succeeded', result=?, finished_at=? WHERE id=? AND owner=? AND state='running'", done
        )
        conn.execute("COMMIT")
        ends[slot] = time.monotonic()
    conn.close()


def sqlite_drain(path: str, n: int, workers: int) -> float:
    ends = FORK.RawArray("d", workers)
    procs = [FORK.Process(target=_sqlite_worker, args=(path, slot, ends)) for slot in range(workers)]
    t0 = time.monotonic()
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(600)
            if p.exitcode != 0:
                raise RuntimeError(f"bare SQLite worker exited {p.exitcode}")
    finally:
        with shielded():
            for p in procs:
                _end_process(p)
    conn = sqlite3.connect(path)
    done = conn.execute("SELECT count(*) FROM jobs WHERE state='succeeded'").fetchone()[0]
    conn.close()
    if done != n:
        raise RuntimeError(f"bare SQLite drained {done}/{n}")
    return max(ends) - t0


# -- peers: Huey (SqliteHuey, process consumer) ----------------------------------------------
def huey_reason() -> str | None:
    """Why Huey cannot be measured (None: it can)."""
    try:
        import huey  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


def _huey_consumer(huey: Any, workers: int) -> None:
    os.setsid()  # its own group: the consumer's workers are ended with it
    huey.create_consumer(workers=workers, worker_type="process", periodic=False).run()


def huey_run(path: str, n: int, workers: int, timeout: float = 600) -> tuple[float, float]:
    """(seconds to enqueue ``n`` tasks one by one, seconds for the consumer to drain them)."""
    from huey import SqliteHuey

    huey = SqliteHuey(name="jobq-bench", filename=path, timeout=60)
    task = huey.task()(bench_tasks.add)
    t0 = time.perf_counter()
    for i in range(n):
        task(i)
    submit = time.perf_counter() - t0
    huey.storage.close()
    proc = FORK.Process(target=_huey_consumer, args=(huey, workers), name="bench-huey-consumer")
    t0 = time.perf_counter()
    proc.start()
    try:
        deadline = time.monotonic() + timeout
        while huey.result_count() < n:  # count(*) over its results: not polled too often
            if time.monotonic() > deadline or not proc.is_alive():
                raise RuntimeError(f"Huey stored {huey.result_count()}/{n} results (consumer alive: {proc.is_alive()})")
            time.sleep(0.01)
        drain = time.perf_counter() - t0
    finally:
        with shielded():
            _end_process(proc, group=True)
            huey.storage.close()
    return submit, drain


# -- peers: RQ (Redis, forking workers) ------------------------------------------------------
def rq_reason() -> str | None:
    """Why RQ cannot be measured (None: it can)."""
    try:
        import redis  # noqa: F401
        import rq  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return redis_unreachable()


def _rq_worker(name: str) -> None:
    from redis import Redis
    from rq import Queue, Worker

    conn = Redis(host="127.0.0.1", port=6379)
    Worker([Queue(name, connection=conn)], connection=conn).work(burst=True, logging_level="WARNING")


def rq_run(n: int, workers: int, timeout: float = 600) -> tuple[float, float]:
    from redis import Redis
    from rq import Queue

    conn = Redis(host="127.0.0.1", port=6379)
    name = f"jobq-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    q = Queue(name, connection=conn)
    procs: list[Any] = []
    try:
        t0 = time.perf_counter()
        for i in range(n):
            q.enqueue(bench_tasks.add, i)
        submit = time.perf_counter() - t0
        procs = [FORK.Process(target=_rq_worker, args=(name,), name="bench-rq-worker") for _ in range(workers)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        while (done := q.finished_job_registry.get_job_count(cleanup=False)) < n:
            failed = q.failed_job_registry.get_job_count(cleanup=False)
            if failed or time.monotonic() > deadline:
                raise RuntimeError(f"RQ finished {done}/{n} jobs, {failed} failed")
            time.sleep(0.005)
        drain = time.perf_counter() - t0
        # Burst workers leave on their own within moments; one stuck in its teardown (joining its
        # pubsub thread, which can wait forever) is ended below, after 5 s in all.
        deadline = time.monotonic() + 5
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        with shielded():
            for p in procs:
                _end_process(p)
            for registry in (q.finished_job_registry, q.failed_job_registry, q.started_job_registry):
                for job_id in registry.get_job_ids():
                    conn.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
                conn.delete(registry.key)
            q.delete(delete_jobs=True)
            for key in conn.scan_iter(f"rq:queue:{name}:*"):  # RQ's own bookkeeping of the queue
                conn.delete(key)
    return submit, drain
