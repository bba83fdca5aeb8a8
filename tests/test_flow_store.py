"""Flow control in the store (issue 17), on SQLite and PostgreSQL alike: the rate's token
bucket, fair partitions and their cap, debounce, quarantine and cpu slots, driven through
the Store with explicit clocks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from jobq.core.errors import ValidationError
from jobq.core.models import JobError, Outcome, OutcomeKind
from jobq.core.spec import validate_spec
from jobq.store.base import Store
from tests.test_store_contract import ADD, T, in_threads, spec, submit

pytestmark = pytest.mark.timeout(60)


def test_the_rate_is_a_token_bucket_whose_burst_is_its_count(store: Store) -> None:
    submit(store, *[spec(queue="r") for _ in range(40)], *[spec(queue="free") for _ in range(3)])
    store.set_queue_rate("r", 5, 1.0, T)
    first = store.claim("s", None, 100, T, T + 30)
    assert Counter(c.queue for c in first) == {"r": 5, "free": 3}  # the burst, and the free queue untouched
    assert store.claim("s", None, 100, T, T + 30) == []  # the bucket is empty
    assert len(store.claim("s", None, 100, T + 0.45, T + 30)) == 2  # 0.45 s at 5/s
    assert store.claim("s", None, 100, T + 0.45, T + 30) == []
    assert len(store.claim("s", None, 100, T + 100, T + 130)) == 5  # refilled to the burst, no more
    assert store.claim("s", None, 100, T + 50, T + 130) == []  # a clock behind the last refill gains nothing
    (info,) = [c for c in store.queue_controls() if c.name == "r"]
    assert (info.rate, info.to_dict()["rate"]) == ("5/s", "5/s")
    store.set_queue_rate("r", None, None, T)
    assert len(store.claim("s", None, 100, T + 100, T + 130)) == 40 - 12


def test_claimers_together_never_exceed_the_rate(opened: Callable[[], Store]) -> None:
    first = opened()
    submit(first, *[spec(queue="r") for _ in range(60)])
    first.set_queue_rate("r", 7, 60.0, T)
    stores = [first] + [opened() for _ in range(3)]
    got = in_threads(4, lambda i: stores[i].claim(f"s{i}", None, 50, T + 1, T + 30))
    flat = [c.id for batch in got for c in batch]
    assert len(flat) == len(set(flat)) == 7


def test_partitions_are_claimed_round_robin_with_priorities_kept(store: Store) -> None:
    submit(store, *[spec(queue="p", partition="A", args=[i]) for i in range(300)])
    submit(store, spec(queue="p", partition="A", priority=5, args=[-1]))
    submit(store, *[spec(queue="p", partition="B", args=[i]) for i in range(3)])
    batch = store.claim("s", ["p"], 8, T, T + 30)
    rows = {c.id: store.get(c.id) for c in batch}
    parts = Counter(r.partition for r in rows.values())
    assert parts["B"] == 3 and parts["A"] == 5  # B's jobs in the first batch, not after A's 300
    a_args = [rows[c.id].args[0] for c in batch if rows[c.id].partition == "A"]
    assert a_args[0] == -1  # the high-priority job of A goes first within A


def test_the_cursor_visits_every_partition_in_turn(store: Store) -> None:
    for p in range(30):
        submit(store, *[spec(queue="p", partition=f"t{p:02d}") for _ in range(3)])
    visits: list[str] = []
    for _ in range(6):  # claims of 10: a quantum of 2 from each of 5 partitions
        batch = [store.get(c.id).partition for c in store.claim("s", ["p"], 10, T, T + 30)]
        assert len(batch) == 10 and len(set(batch)) == 5
        visits += list(dict.fromkeys(batch))
    assert visits == [f"t{p:02d}" for p in range(30)]  # each partition visited once before any twice
    rest = [store.get(c.id).partition for c in store.claim("s", ["p"], 100, T, T + 30)]
    assert sorted(rest) == [f"t{p:02d}" for p in range(30)]  # the third job of each


def test_the_partition_cap_holds_across_claimers(opened: Callable[[], Store]) -> None:
    first = opened()
    for p in "ABC":
        submit(first, *[spec(queue="p", partition=p) for _ in range(10)])
    submit(first, *[spec(queue="p") for _ in range(2)])  # no partition: not capped per partition
    first.set_partition_limit("p", 2, T)
    stores = [first] + [opened() for _ in range(3)]
    got = in_threads(4, lambda i: stores[i].claim(f"s{i}", None, 10, T, T + 30))
    flat = [c.id for batch in got for c in batch]
    assert len(flat) == len(set(flat))
    parts = Counter(first.get(i).partition for i in flat)
    assert parts == {"A": 2, "B": 2, "C": 2, None: 2}
    assert first.claim("s", None, 10, T, T + 30) == []  # every partition at its cap
    (info,) = [c for c in first.queue_controls() if c.name == "p"]
    assert info.partition_concurrency == 2
    assert first.partition_counts("p", 2) == [("A", 8, 2), ("B", 8, 2)]


def test_partition_counts_rank_the_top_n(store: Store) -> None:
    for p, n in (("big", 7), ("mid", 4), ("small", 1)):
        submit(store, *[spec(queue="p", partition=p) for _ in range(n)])
    assert store.partition_counts("p", 2) == [("big", 7, 0), ("mid", 4, 0)]


def test_debounce_replaces_the_arguments_of_the_unstarted_job(store: Store) -> None:
    (first,) = submit(store, spec(key="k", args=[1]))
    subs, _ = store.submit([spec(key="k", args=[2], on_conflict="replace")], T)
    assert (subs[0].id, subs[0].existing, store.get(first).args) == (first, True, [2])
    subs, _ = store.submit([spec(key="k", args=[3])], T)  # the default keeps the queued job as it is
    assert (subs[0].id, store.get(first).args) == (first, [2])
    store.claim("s", None, 1, T, T + 30)
    subs, _ = store.submit([spec(key="k", args=[4], on_conflict="replace")], T)  # running: left alone
    assert (subs[0].id, subs[0].existing, store.get(first).args) == (first, True, [2])


def _crash(store: Store, job_id: int, now: float, crashed: bool = True) -> None:
    (c,) = store.claim("s", None, 1, now, now + 30)
    assert c.id == job_id
    error = JobError("WorkerDied", "worker 1 died while running the job: signal SIGSEGV")
    store.finish("s", [Outcome(job_id, c.attempts, OutcomeKind.FAILED, error=error, crashed=crashed, max_crashes=3)], now)


def test_a_job_that_kills_its_worker_three_times_in_a_row_is_quarantined(store: Store) -> None:
    (job_id,) = submit(store, spec(retries=10, retry_backoff=0))
    _crash(store, job_id, T)
    _crash(store, job_id, T + 1, crashed=False)  # another failure breaks the run
    for i in range(3):
        _crash(store, job_id, T + 2 + i)
    rec = store.get(job_id)
    assert (rec.state, rec.error["type"], rec.quarantined, rec.attempts) == ("failed", "Quarantined", True, 5)
    assert "3 attempts in a row" in rec.error["message"]
    (plain,) = submit(store, spec())
    store.claim("s", None, 1, T, T + 30)
    store.finish("s", [Outcome(plain, 1, OutcomeKind.FAILED, error=JobError("E"), retriable=False)], T)
    assert store.retry(None, T) == [plain]  # --failed leaves the quarantined job alone
    assert store.retry(None, T, include_quarantined=True) == [job_id]
    assert (store.get(job_id).crashes, store.get(job_id).quarantined) == (0, False)


def test_a_job_needing_more_slots_than_offered_is_left(store: Store) -> None:
    (big,) = submit(store, spec(cpus=3))
    assert not store.has_runnable(None, T, slots=2)
    assert store.claim("small", None, 10, T, T + 30, slots=2) == []
    (c,) = store.claim("large", None, 10, T, T + 30, slots=4)
    assert (c.id, c.cpus) == (big, 3)


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpus", 0), ("cpus", -1), ("memory_mb", -5), ("memory_mb", 0), ("partition", ""), ("on_conflict", "merge")],
)
def test_bad_values_name_their_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_spec({"target": ADD, field: value}, 10**6)
    assert info.value.field == field


def _hold_the_claim_turn(any_db: str) -> tuple[Any, str]:
    """A raw connection inside a transaction that holds what a limited claim must wait for:
    SQLite's write lock (BEGIN IMMEDIATE), PostgreSQL's limited-claims advisory lock."""
    if any_db.startswith("postgres"):
        import psycopg

        from jobq.store.postgres import split_url

        conninfo, schema = split_url(any_db)
        conn = psycopg.connect(conninfo, options=f"-c search_path={schema}")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"jobq-limits-{schema}",))
        return conn, "%s"
    import sqlite3

    conn = sqlite3.connect(any_db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn, "?"


def test_a_claim_reads_the_bucket_only_once_the_claim_before_it_committed(any_db: str, opened: Callable[[], Store]) -> None:
    """Interleaved by hand: claim 1 (a raw transaction) spends the bucket and has not committed
    when claim 2 starts; claim 2 waits for it, then finds the bucket empty."""
    import threading
    import time

    store = opened()
    submit(store, *[spec(queue="r") for _ in range(10)])
    store.set_queue_rate("r", 5, 3600.0, T)
    conn, mark = _hold_the_claim_turn(any_db)
    got: list[list[object]] = []
    other = threading.Thread(target=lambda: got.append(list(opened().claim("s2", None, 10, T + 1, T + 30))))
    other.start()
    time.sleep(0.3)
    assert not got, "the second claim did not wait for the first"
    conn.execute(f"UPDATE queues SET tokens=0, refilled_at={mark} WHERE name='r'", (T + 1,))  # claim 1 spent the bucket
    conn.execute("COMMIT")
    conn.close()
    other.join(30)
    assert got == [[]]  # nothing left to spend: claim 2 took none


def test_a_single_partitioned_submit_makes_its_queue_fair(store: Store) -> None:
    """Every submit path marks the queue (PostgreSQL has a one-statement path for one job)."""
    submit(store, spec(queue="solo", partition="t1"))
    assert [c.partitioned for c in store.queue_controls() if c.name == "solo"] == [True]
    assert [c.queue for c in store.claim("s", ["solo"], 5, T, T + 30)] == ["solo"]
