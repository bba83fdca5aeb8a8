"""Issue 18: ``q.submit(..., conn=connection)`` writes the job in the caller's open transaction,
on both backends: a commit makes it run once, a rollback leaves nothing stored and nothing
run, and a connection in autocommit mode or on another database is refused."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobq
from tests import stack_tasks
from tests.conftest import PG_URL

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def backend(any_db: str) -> Iterator[tuple[str, Any]]:
    """(database URL, a function opening a caller's connection with an ``orders`` table)."""
    opened: list[Any] = []
    if any_db.startswith("postgresql"):
        import psycopg

        schema = any_db.rsplit("schema=", 1)[1]
        jobq.Queue(any_db)  # the schema exists before the caller's table goes into it

        def connect(**kwargs: Any) -> Any:
            conn = psycopg.connect(PG_URL, **kwargs)
            opened.append(conn)
            return conn

        with psycopg.connect(PG_URL, autocommit=True) as setup:
            setup.execute(f'CREATE TABLE "{schema}".orders (id INTEGER)')
        table = f'"{schema}".orders'
    else:

        def connect(**kwargs: Any) -> Any:
            conn = sqlite3.connect(any_db, **kwargs)
            opened.append(conn)
            return conn

        jobq.Queue(any_db)
        with sqlite3.connect(any_db) as setup:
            setup.execute("CREATE TABLE orders (id INTEGER)")
        table = "orders"
    connect.table = table  # type: ignore[attr-defined]
    try:
        yield any_db, connect
    finally:
        for conn in opened:
            conn.close()


def insert_order(conn: Any, table: str, order_id: int) -> None:
    mark = "%s" if type(conn).__module__.startswith("psycopg") else "?"
    conn.execute(f"INSERT INTO {table} (id) VALUES ({mark})", (order_id,))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_committed_submit_runs_once(backend: tuple[str, Any], tmp_path: Path) -> None:
    url, connect = backend
    q = jobq.Queue(url)
    out = tmp_path / "sent.txt"
    conn = connect()
    insert_order(conn, connect.table, 1)
    job = q.submit(stack_tasks.record, (str(out), "mail-1"), conn=conn)
    group = q.map(stack_tasks.square, [1, 2, 3], conn=conn)
    many = q.submit_many(stack_tasks.square, [4, 5], conn=conn)
    # Not visible outside the caller's transaction until it commits.
    assert q.store.get_states([job.id, *group.job_ids, *(j.id for j in many)]) == {}
    conn.commit()
    with jobq.Supervisor(q, concurrency=2):
        assert job.join(timeout=60) == "mail-1"
        assert group.join(timeout=60) == [1, 4, 9]
        assert [j.join(timeout=60) for j in many] == [16, 25]
    assert lines(out) == ["mail-1"]
    assert q.store.count_jobs() == 6


def test_a_rolled_back_submit_stores_nothing_and_runs_nothing(backend: tuple[str, Any], tmp_path: Path) -> None:
    url, connect = backend
    q = jobq.Queue(url)
    out = tmp_path / "sent.txt"
    conn = connect()
    insert_order(conn, connect.table, 1)
    q.submit(stack_tasks.record, (str(out), "never"), conn=conn)
    q.map(stack_tasks.record, [(str(out), "never either")], conn=conn)
    conn.rollback()
    assert q.store.count_jobs() == 0
    # A job submitted after it runs once the supervisor has looked at everything before it.
    marker = q.submit(stack_tasks.record, (str(out), "marker"))
    with jobq.Supervisor(q, concurrency=1):
        assert marker.join(timeout=60) == "marker"
    assert lines(out) == ["marker"]
    assert q.store.count_jobs() == 1


def test_a_failed_submit_leaves_the_callers_transaction_usable(backend: tuple[str, Any]) -> None:
    url, connect = backend
    q = jobq.Queue(url)
    conn = connect()
    insert_order(conn, connect.table, 42)
    with pytest.raises(jobq.ValidationError, match="depends_on"):
        q.submit(stack_tasks.square, (2,), depends_on=[999_999], conn=conn)  # fails inside the insert
    job = q.submit(stack_tasks.square, (3,), conn=conn)
    conn.commit()
    check = connect()
    assert check.execute(f"SELECT id FROM {connect.table}").fetchall() == [(42,)]
    assert q.store.get_states([job.id]) == {job.id: "queued"}
    assert q.store.count_jobs() == 1


def test_autocommit_and_other_databases_are_refused(backend: tuple[str, Any], tmp_path: Path) -> None:
    url, connect = backend
    q = jobq.Queue(url)
    if url.startswith("postgresql"):
        import psycopg

        autocommit = connect(autocommit=True)
        other = psycopg.connect(PG_URL.rsplit("/", 1)[0] + "/postgres")
    else:
        autocommit = connect(isolation_level=None)
        other = sqlite3.connect(tmp_path / "other.db")
    try:
        with pytest.raises(jobq.ValidationError, match="autocommit"):
            q.submit(stack_tasks.square, (1,), conn=autocommit)
        with pytest.raises(jobq.ValidationError, match="another database|not on"):
            q.submit(stack_tasks.square, (1,), conn=other)
        with pytest.raises(jobq.ValidationError, match="conn"):
            q.map(stack_tasks.square, [1], conn=object())
    finally:
        other.close()
    assert q.store.count_jobs() == 0


def test_a_sqlite_utils_database_is_accepted(tmp_path: Path) -> None:
    import sqlite_utils

    path = tmp_path / "jobs.db"
    q = jobq.Queue(path)
    db = sqlite_utils.Database(sqlite3.connect(path))
    try:
        db.conn.execute("BEGIN")
        db["orders"].insert({"id": 1})
        job = q.submit(stack_tasks.square, (5,), conn=db)
        db.conn.execute("COMMIT")
        assert q.store.get_states([job.id]) == {job.id: "queued"}
    finally:
        db.conn.close()


def test_a_psycopg_submit_wakes_a_listening_supervisor_at_commit(pg_url: str) -> None:
    """NOTIFY is transactional: the supervisor is woken by the caller's commit."""
    import psycopg

    q = jobq.Queue(pg_url)
    with psycopg.connect(PG_URL) as conn, jobq.Supervisor(q, concurrency=1):
        job = q.submit(stack_tasks.square, (6,), conn=conn)
        conn.commit()
        assert job.join(timeout=30) == 36
