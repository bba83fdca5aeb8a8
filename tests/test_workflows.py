"""Issue 4 (workflows) through the Python API: delayed jobs, schedules, dependencies,
map/reduce groups, unique keys, progress and retention. CLI and multi-supervisor checks
live in tests/test_workflows_cli.py."""

from __future__ import annotations

import random
import re
import sqlite3
import time
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import jobq
from jobq.core.errors import GroupNotFound, JobFailed, JobNotFound, ValidationError
from tests.conftest import run_cli, wait_for

ADD = "tests.tasks:add"


def supervisor(q: jobq.Queue, concurrency: int = 2, **kwargs: object) -> jobq.Supervisor:
    """An embedded supervisor (background process) with a short drain, for ``with``."""
    return jobq.Supervisor(q, concurrency=concurrency, grace=2, **kwargs)  # type: ignore[arg-type]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def spans(path: Path) -> dict[str, tuple[float, float]]:
    """``token start end`` lines written by tests.tasks:span."""
    out = {}
    for line in lines(path):
        token, start, end = line.split()
        out[token] = (float(start), float(end))
    return out


def names(text: str, job_id: int) -> bool:
    """Whether ``text`` names job ``job_id`` (as a whole number, not a digit of another)."""
    return re.search(rf"(?<!\d){job_id}(?!\d)", text) is not None


# -- delayed jobs -------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_delayed_job_is_scheduled_then_runs_at_its_time(queue: jobq.Queue) -> None:
    with supervisor(queue, concurrency=1):
        wait_for(lambda: queue.live_supervisors(), 30, what="the supervisor to start")
        submitted = time.time()
        job = queue.submit(ADD, (1, 2), delay=1)
        assert job.state == "scheduled"
        record = queue.record(job.id)
        assert submitted + 0.9 <= record.run_at <= time.time() + 1.1
        assert job.join(timeout=30) == 3
        record = queue.record(job.id)
    assert record.state == "succeeded"
    assert record.started_at is not None
    # Never before its time; soon after it with a free worker (the issue says within one
    # second; the bound is loose because this machine is shared).
    assert record.started_at >= record.run_at
    assert record.started_at - record.run_at < 2.5, record.started_at - record.run_at


def test_run_at_must_be_timezone_aware(queue: jobq.Queue) -> None:
    with pytest.raises(ValidationError) as exc:
        queue.submit(ADD, (1,), run_at=datetime.now() + timedelta(hours=1))
    assert exc.value.field == "run_at"
    with pytest.raises(ValidationError):
        queue.submit(ADD, (1,), delay=5, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert queue.store.count_jobs() == 0
    when = datetime.now(UTC) + timedelta(hours=1)
    job = queue.submit(ADD, (1,), run_at=when)
    assert job.state == "scheduled"
    assert abs(queue.record(job.id).run_at - when.timestamp()) < 0.01


# -- periodic jobs ------------------------------------------------------------------------
def test_schedule_validation(queue: jobq.Queue) -> None:
    with pytest.raises(ValidationError):
        queue.schedule("bad-cron", ADD, cron="every tuesday")
    with pytest.raises(ValidationError):
        queue.schedule("both", ADD, cron="* * * * *", every="1m")
    with pytest.raises(ValidationError):
        queue.schedule("neither", ADD)
    with pytest.raises(ValidationError):
        queue.schedule("bad-target", "not a target", every="1m")
    assert queue.schedules() == []
    queue.schedule("ok", ADD, args=(1, 2), every="90s")
    [s] = queue.schedules()
    assert (s.name, s.target, s.args, s.every) == ("ok", ADD, [1, 2], 90.0)
    assert s.next_run_at > time.time() + 60


@pytest.mark.timeout(60)
def test_missed_schedule_runs_once_on_start_not_once_per_missed_tick(queue: jobq.Queue, db_path: str) -> None:
    queue.schedule("hourly", ADD, args=(1, 2), every="1h")
    # The supervisors were down for ten and a half hours: ten ticks were missed.
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE schedules SET next_run_at=? WHERE name='hourly'", (time.time() - 10.5 * 3600,))
    with supervisor(queue, concurrency=1):
        wait_for(lambda: [j for j in queue.list(limit=50) if j.name == "hourly"], 30, what="the missed run")
        wait_for(lambda: queue.status()["counts"]["succeeded"] >= 1, 30, what="the run to finish")
        # Several maintenance passes (one a second) later, still a single run.
        deadline = time.time() + 2.5
        wait_for(lambda: time.time() > deadline and queue.live_supervisors(), 30, what="a few maintenance passes")
    runs = [j for j in queue.list(limit=50) if j.name == "hourly"]
    assert len(runs) == 1, [(j.id, j.created_at) for j in runs]
    assert runs[0].result == 3
    [s] = queue.schedules()
    # The next run is in the future, on the old phase: half an hour from now.
    assert time.time() + 1000 < s.next_run_at < time.time() + 3600
    assert s.last_run_at is not None


# -- dependencies -------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_chain_runs_in_order(queue: jobq.Queue, tmp_path: Path) -> None:
    side = tmp_path / "order.txt"
    a = queue.submit("tests.tasks:span", (str(side), "A", 0.3))
    b = queue.submit("tests.tasks:span", (str(side), "B", 0.1), depends_on=[a])
    c = queue.submit("tests.tasks:span", (str(side), "C", 0.1), depends_on=[b])
    assert (a.state, b.state, c.state) == ("queued", "waiting", "waiting")
    assert queue.record(c.id).depends_on == [b.id]
    with supervisor(queue, concurrency=2):
        assert c.join(timeout=30) == "C"
    assert [line.split()[0] for line in lines(side)] == ["A", "B", "C"]
    times = spans(side)
    assert times["B"][0] >= times["A"][1]
    assert times["C"][0] >= times["B"][1]
    assert [j.state for j in (a, b, c)] == ["succeeded"] * 3


@pytest.mark.timeout(60)
def test_failing_dependency_cancels_dependents_transitively(queue: jobq.Queue) -> None:
    a = queue.submit("tests.tasks:fail", ("boom",))
    b = queue.submit(ADD, (1,), depends_on=[a])
    c = queue.submit(ADD, (2,), depends_on=[b])
    other = queue.submit(ADD, (3,))
    with supervisor(queue, concurrency=2):
        with pytest.raises(JobFailed) as exc:
            c.join(timeout=30)
        assert other.join(timeout=30) == 4
    assert exc.value.state == "cancelled"
    assert exc.value.error_type == "DependencyFailed"
    assert a.state == "failed"
    for job in (b, c):
        record = queue.record(job.id)
        assert record.state == "cancelled"
        assert record.attempts == 0  # never ran
        assert record.error is not None and record.error["type"] == "DependencyFailed"
        assert names(record.error["message"], a.id), record.error
    # A dependency that has already failed cancels a new dependent at once.
    late = queue.submit(ADD, (4,), depends_on=[a])
    assert late.state == "cancelled"
    assert names(queue.record(late.id).error["message"], a.id)


def test_cancelling_a_dependency_cancels_its_dependents(queue: jobq.Queue) -> None:
    a = queue.submit(ADD, (1,))
    b = queue.submit(ADD, (1,), depends_on=[a])
    c = queue.submit(ADD, (1,), depends_on=[b])
    a.cancel()
    for job in (b, c):
        record = queue.record(job.id)
        assert record.state == "cancelled"
        assert record.error["type"] == "DependencyFailed"
        assert names(record.error["message"], a.id)


def test_unknown_or_future_dependency_is_rejected_at_submit(queue: jobq.Queue) -> None:
    a = queue.submit(ADD, (1,))
    before = queue.store.count_jobs()
    for deps in ([999_999], [a, 999_999], [a.id + 1], ["nope"]):
        # a.id + 1 is the id the new job itself would get: a cycle cannot be formed.
        with pytest.raises(ValidationError) as exc:
            queue.submit(ADD, (2,), depends_on=deps)
        assert exc.value.field == "depends_on"
        assert queue.store.count_jobs() == before
    done_dep = queue.submit(ADD, (3,), depends_on=[a])
    assert done_dep.state == "waiting"


# -- map and reduce -----------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_map_over_1000_items_joins_in_input_order(queue: jobq.Queue) -> None:
    values = list(range(1000))
    random.Random(4).shuffle(values)
    group = queue.map(ADD, values)
    assert len(group) == 1000
    assert isinstance(group.id, str) and group.id.startswith("g")
    with supervisor(queue, concurrency=2):
        results = group.join(timeout=100)
    assert results == [v + 1 for v in values]
    assert group.counts() == {"succeeded": 1000}


@pytest.mark.timeout(120)
def test_map_then_reduce_sums_1_to_1000(queue: jobq.Queue) -> None:
    group = queue.map(ADD, ((i, 0) for i in range(1, 1001)))  # a tuple item is the argument list
    reduce = queue.submit("tests.tasks:total", depends_on=group, pass_results=True)
    assert reduce.state == "waiting"
    with supervisor(queue, concurrency=2):
        assert reduce.join(timeout=100) == 500500
        assert group.join(timeout=10) == list(range(1, 1001))
    assert queue.record(reduce.id).args == []  # the results are passed, not stored as args


@pytest.mark.timeout(60)
def test_map_items_tuple_is_argument_list_anything_else_is_one_argument(queue: jobq.Queue) -> None:
    items = [(1, 2), [1, 2], 5, "x", {"a": 1}, (), None]
    group = queue.map("tests.tasks:echo", items)
    expected_args = [[1, 2], [[1, 2]], [5], ["x"], [{"a": 1}], [], [None]]
    assert [queue.record(i).args for i in group.job_ids] == expected_args
    assert [queue.record(i).group_index for i in group.job_ids] == list(range(len(items)))
    squares = queue.map("tests.tasks:square", range(1, 6))
    with supervisor(queue, concurrency=2):
        results = group.join(timeout=30)
        assert squares.join(timeout=30) == [1, 4, 9, 16, 25]
    assert [r["args"] for r in results] == expected_args


@pytest.mark.timeout(60)
def test_group_join_names_the_failed_item_and_group_can_be_found_again(queue: jobq.Queue) -> None:
    group = queue.map(ADD, [(1, 2), (3, 4), ("a", 1), (5, 6)])  # "a" + 1 raises TypeError
    again = queue.group(group.id)
    assert again.id == group.id and again.job_ids == group.job_ids and len(again) == 4
    with pytest.raises(GroupNotFound):
        queue.group("g999999")
    with supervisor(queue, concurrency=2):
        with pytest.raises(JobFailed) as exc:
            again.join(timeout=30)
        wait_for(lambda: sum(group.counts().values()) == group.counts().get("succeeded", 0) + 1, 30, what="all items done")
    assert exc.value.index == 2
    assert exc.value.job_id == group.job_ids[2]
    assert exc.value.error_type == "TypeError"
    assert "item 2" in str(exc.value)
    assert [queue.get(i).result for i in group.job_ids] == [3, 7, None, 11]


@pytest.mark.timeout(60)
def test_map_streams_100000_items_without_holding_them(queue: jobq.Queue) -> None:
    class Item(dict):  # JSON-serialisable and weakly referenceable: we can count live items
        pass

    alive = 0
    peak = 0

    def gone() -> None:
        nonlocal alive
        alive -= 1

    def items():  # type: ignore[no-untyped-def]
        nonlocal alive, peak
        for i in range(100_000):
            item = Item(n=i)
            if i % 10 == 0:  # watch one item in ten: cheaper, and as telling
                weakref.finalize(item, gone)
                alive += 1
                peak = max(peak, alive)
            yield item

    group = queue.map(ADD, items(), check=False)
    assert len(group) == 100_000
    assert peak < 5_000, f"{peak} of the 10,000 watched items were held at once"
    assert group.counts() == {"queued": 100_000}
    assert queue.record(group.job_ids[0]).args == [{"n": 0}]
    assert queue.record(group.job_ids[-1]).args == [{"n": 99_999}]
    assert len(queue.group(group.id)) == 100_000


# -- unique jobs --------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_duplicate_key_returns_the_first_job_until_it_finishes(queue: jobq.Queue) -> None:
    first = queue.submit(ADD, (1, 2), key="report")
    assert first.existing is False
    count = queue.store.count_jobs()
    again = queue.submit(ADD, (5, 6), key="report")
    assert again.existing is True and again.id == first.id
    assert queue.store.count_jobs() == count
    assert queue.submit(ADD, (1, 2), key="other").existing is False
    later = queue.submit(ADD, (1,), key="later", delay="1h")  # scheduled is unfinished too
    assert queue.submit(ADD, (1,), key="later").id == later.id
    with supervisor(queue, concurrency=1):
        assert first.join(timeout=30) == 3
        fresh = queue.submit(ADD, (7, 8), key="report")
        assert fresh.existing is False and fresh.id != first.id
        assert fresh.join(timeout=30) == 15
    assert queue.record(fresh.id).key == "report"


# -- progress -----------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_progress_is_visible_mid_job(queue: jobq.Queue, db_path: str, tmp_path: Path, processes) -> None:  # type: ignore[no-untyped-def]
    processes.supervisor(db_path, "-c", "1")
    job = queue.submit("tests.tasks:progress", (str(tmp_path / "half.txt"), 30))
    wait_for(lambda: queue.record(job.id).progress == 0.5, 30, what="progress 0.5")
    wait_for(lambda: queue.record(job.id).state == "running", 10, what="the job to read running")
    record = queue.record(job.id)
    assert record.progress_message == "half way"
    out = run_cli(db_path, "status", str(job.id))
    assert out.returncode == 0, out.stderr
    assert re.search(r"progress:\s+50%\s+half way", out.stdout), out.stdout
    out = run_cli(db_path, "status", str(job.id), "--json")
    assert '"progress": 0.5' in out.stdout


# -- retention ----------------------------------------------------------------------------
def test_purge_deletes_finished_jobs_only(queue: jobq.Queue) -> None:
    cancelled = queue.submit(ADD, (1,))
    cancelled.cancel()
    queued = queue.submit(ADD, (1,))
    scheduled = queue.submit(ADD, (1,), delay="1h")
    waiting = queue.submit(ADD, (1,), depends_on=[queued])
    with pytest.raises(ValidationError):
        queue.purge(["queued"])
    assert queue.purge(older_than="1h") == 0
    assert queue.purge(older_than=0) == 1
    with pytest.raises(JobNotFound):
        queue.get(cancelled.id)
    assert [j.state for j in (queued, scheduled, waiting)] == ["queued", "scheduled", "waiting"]


def test_store_purge_by_result_ttl(queue: jobq.Queue) -> None:
    """What the supervisor runs once a minute: per-job result_ttl, else the global one."""
    short = queue.submit(ADD, (1,), result_ttl="10s")
    long = queue.submit(ADD, (1,), result_ttl="1h")
    plain = queue.submit(ADD, (1,))
    for job in (short, long, plain):
        job.cancel()  # finished now
    states = ["succeeded", "failed", "cancelled"]
    now = time.time()
    assert queue.store.purge(now, states, None, None) == 0  # nothing is past its ttl yet
    assert queue.store.purge(now + 60, states, None, None) == 1  # short only; no global ttl
    assert [j.id for j in queue.list()] == [plain.id, long.id]
    assert queue.store.purge(now + 60, states, None, 30) == 1  # plain: past the global 30 s
    assert queue.store.purge(now + 600, states, None, 30) == 0  # long keeps its own 1 h
    assert queue.store.purge(now + 7200, states, None, 30) == 1
    assert queue.store.count_jobs() == 0


@pytest.mark.timeout(90)
def test_supervisor_deletes_jobs_past_their_result_ttl(queue: jobq.Queue, db_path: str, processes) -> None:  # type: ignore[no-untyped-def]
    short = queue.submit(ADD, (1,), result_ttl=0)
    long = queue.submit(ADD, (2,), result_ttl="1h")
    plain = queue.submit(ADD, (3,))
    first = processes.supervisor(db_path, "-c", "1", "--burst")
    assert first.wait(timeout=60) == 0
    assert [j.state for j in (short, long, plain)] == ["succeeded"] * 3
    # The supervisor purges when it starts and then once a minute: a new one purges now.
    second = processes.supervisor(db_path, "-c", "1", "--burst")
    assert second.wait(timeout=60) == 0
    with pytest.raises(JobNotFound):
        queue.get(short.id)
    assert long.result == 3 and plain.result == 4
