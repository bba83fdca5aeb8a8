"""One ``q.submit`` on PostgreSQL is one round trip to the server (issue 15): the insert and
its NOTIFY in one statement, committed by itself. Counted from libpq's own protocol trace."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobq

pytestmark = pytest.mark.timeout(60)


def _round_trips(trace: Path) -> list[str]:
    """The messages of the trace after which the client waits for the server (Sync, Query)."""
    sent = [line.split("\t") for line in trace.read_text().splitlines() if line.startswith("F\t")]
    return [fields[2].strip() for fields in sent if fields[2].strip() in ("Sync", "Query")]


def test_a_submit_is_one_round_trip_and_wakes_listeners(pg_url: str, tmp_path: Path) -> None:
    import psycopg
    from psycopg.pq import Trace

    q = jobq.Queue(pg_url)
    q.submit("tests.tasks:add", (1,))  # connected, target imported: not counted
    schema = pg_url.rsplit("schema=", 1)[1]
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as listener:
        listener.execute(f"LISTEN jobq_{schema}_submitted")
        raw = q.store._conn().raw  # type: ignore[attr-defined]
        trace = tmp_path / "trace.txt"
        with trace.open("w") as fh:
            raw.pgconn.trace(fh.fileno())
            raw.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
            try:
                job = q.submit("tests.tasks:add", (2, 3))
            finally:
                raw.pgconn.untrace()
        assert _round_trips(trace) == ["Sync"], trace.read_text()
        woken = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in woken] == [f"jobq_{schema}_submitted"]
    # Committed: another connection sees it queued, as a job of the usual shape.
    record = jobq.Queue(pg_url).record(job.id)
    assert record.state == "queued" and record.target == "tests.tasks:add" and record.args == [2, 3]


def test_submits_that_need_a_transaction_still_get_one(pg_url: str) -> None:
    """A key, dependencies or a batch keep the transaction (the key's lock, the dependency's
    share lock, all or none): only the plain submit is one statement."""
    q = jobq.Queue(pg_url)
    first = q.submit("tests.tasks:add", (1,), key="k")
    assert q.submit("tests.tasks:add", (1,), key="k").existing and first.id
    child = q.submit("tests.tasks:add", (2,), depends_on=[first])
    assert q.record(child.id).state == "waiting"
    with pytest.raises(jobq.ValidationError):
        q.submit_batch([{"target": "tests.tasks:add", "args": [3]}, {"target": "tests.tasks:add", "depends_on": [10**9]}])
    assert sorted(q.status()["counts"][s] for s in ("queued", "waiting")) == [1, 1]


def test_the_one_statement_submit_stores_what_the_transaction_path_stores(pg_url: str) -> None:
    """The one-statement insert names only the columns a job sets (the rest default to NULL):
    a plain job and one with every option of that path set read back field for field as the
    same jobs stored through the transaction path (inside a batch)."""
    q = jobq.Queue(pg_url)
    options = {"name": "n1", "priority": 3, "timeout": 2.5, "retries": 2, "result_ttl": 60, "memory_mb": 64, "cpus": 1}
    plain, full = q.submit("tests.tasks:add", (1, 2)), q.submit("tests.tasks:add", (3,), {"b": 4}, **options)
    by_batch = q.submit_batch(
        [{"target": "tests.tasks:add", "args": [1, 2]}, {"target": "tests.tasks:add", "args": [3], "kwargs": {"b": 4}, **options}]
    )
    fields = ("name", "target", "args", "kwargs", "queue", "priority", "state", "max_attempts", "timeout", "key")
    fields += ("group_id", "partition", "memory_mb", "cpus")
    for one, other in zip((plain, full), by_batch, strict=True):
        mine, theirs = q.record(one.id), q.record(other.id)
        assert {f: getattr(mine, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert q.record(full.id).name == "n1" and q.record(full.id).timeout == 2.5 and q.record(plain.id).name is None
    assert q.record(full.id).memory_mb == 64 and q.record(plain.id).memory_mb is None


def _jobs(q: jobq.Queue) -> int:
    return sum(q.status()["counts"].values())


def test_a_failed_prepared_submit_raises_the_stores_error_and_stores_nothing(pg_url: str) -> None:
    """The submit's prepared statement fails on a read-only session: the error is the store's,
    named as psycopg's path names it, and no job is stored; the session writable again, the
    next submit works."""
    q = jobq.Queue(pg_url)
    q.submit("tests.tasks:add", (1,))
    raw = q.store._conn().raw  # type: ignore[attr-defined]
    raw.execute("SET default_transaction_read_only = on")
    with pytest.raises(jobq.StoreError, match="read-only"):
        q.submit("tests.tasks:add", (2,))
    raw.execute("SET default_transaction_read_only = off")
    assert _jobs(q) == 1
    assert q.record(q.submit("tests.tasks:add", (3,)).id).args == [3]


def test_a_submit_whose_prepared_statement_is_gone_stores_the_job_once(pg_url: str) -> None:
    """DEALLOCATE ALL (what a pooler or a reset may do) drops the prepared insert: that submit
    goes through psycopg and the next prepares it again; each job is stored once."""
    q = jobq.Queue(pg_url)
    q.submit("tests.tasks:add", (1,))
    q.store._conn().raw.execute("DEALLOCATE ALL")  # type: ignore[attr-defined]
    second, third = q.submit("tests.tasks:add", (2,)), q.submit("tests.tasks:add", (3,))
    assert _jobs(q) == 3 and [q.record(j.id).args for j in (second, third)] == [[2], [3]]


def test_a_submit_on_a_connection_the_server_ended_reconnects_and_stores_the_job_once(pg_url: str) -> None:
    import psycopg

    q = jobq.Queue(pg_url)
    q.submit("tests.tasks:add", (1,))
    pid = q.store._conn().raw.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    job = q.submit("tests.tasks:add", (2,))
    assert _jobs(q) == 2 and q.record(job.id).args == [2]
    assert q.store._conn().raw.info.backend_pid != pid  # type: ignore[attr-defined]
