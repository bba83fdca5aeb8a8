"""Chunked maps: one job per K items, results in input order, failures naming the item,
progress in items; from Python and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import jobq
from jobq.worker.chunks import CHUNK_TARGET
from tests import tasks
from tests.conftest import run_cli, wait_for

pytestmark = pytest.mark.timeout(90)


def test_chunked_map_of_100000_items(queue: jobq.Queue) -> None:
    group = queue.map(tasks.square, range(100_000), chunksize=1000)
    assert len(group) == 100_000 and len(group.job_ids) == 100 and group.chunksize == 1000
    assert group.counts() == {"queued": 100_000}
    with jobq.Supervisor(queue, concurrency=2):
        results = group.join(timeout=60)
    assert results == [x * x for x in range(100_000)]
    again = queue.group(group.id)  # read back from the store alone
    assert again.chunksize == 1000 and len(again) == 100_000
    assert again.counts() == {"succeeded": 100_000}
    assert again.join(timeout=5) == results
    record = queue.record(group.job_ids[7])
    assert record.target == CHUNK_TARGET and record.args[0] == "tests.tasks:square" and record.args[1] == 7000


def test_uneven_chunks_kwargs_tuples_and_counts_in_items(queue: jobq.Queue) -> None:
    group = queue.map(tasks.add, [(i, i) for i in range(10)] + [5], chunksize=4, kwargs=None)
    assert len(group.job_ids) == 3 and len(group) == 11
    with_kwargs = queue.map(tasks.add, range(7), chunksize=3, kwargs={"y": 100})
    one = queue.map(tasks.square, range(5), chunksize=1)  # today's behaviour: a job per item
    assert len(one.job_ids) == 5 and one.chunksize == 1
    assert group.counts() == {"queued": 11}
    with jobq.Supervisor(queue, concurrency=2):
        assert group.join(timeout=30) == [2 * i for i in range(10)] + [6]
        assert with_kwargs.join(timeout=30) == [i + 100 for i in range(7)]
        assert one.join(timeout=30) == [0, 1, 4, 9, 16]
    assert queue.group(group.id).counts() == {"succeeded": 11}


def test_a_failure_names_the_items_index(queue: jobq.Queue) -> None:
    group = queue.map(tasks.fail_at, [(i, 37) for i in range(100)], chunksize=10)
    with jobq.Supervisor(queue, concurrency=2):
        with pytest.raises(jobq.JobFailed) as info:
            group.join(timeout=30)
        assert info.value.index == 37 and info.value.error_type == "ValueError" and "bad item 37" in info.value.message
        assert "item 37 of the map" in info.value.traceback
        # The failed chunk's ten items fail; the other chunks run on.
        wait_for(lambda: queue.group(group.id).counts() == {"succeeded": 90, "failed": 10}, what="every chunk to finish")
        crashed = queue.map(tasks.square_or_die, range(6), chunksize=2)
        with pytest.raises(jobq.JobFailed) as info:
            crashed.join(timeout=30)
        assert info.value.index == 2 and info.value.error_type == "WorkerDied"  # the chunk's first item


def test_bad_chunked_input_stores_nothing(queue: jobq.Queue) -> None:
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(jobq.ValidationError) as info:
            queue.map(tasks.square, range(10), chunksize=bad)
        assert info.value.field == "chunksize"
    with pytest.raises(jobq.ValidationError) as info:
        queue.map(tasks.square, [1, 2, object(), 4], chunksize=2)
    assert info.value.field == "args" and "items 2..3" in str(info.value)
    with pytest.raises(jobq.ValidationError) as info:
        queue.map(tasks.square, ["x" * 600_000, "y" * 600_000], chunksize=2)
    assert info.value.field == "chunksize"
    with pytest.raises(jobq.ValidationError):
        queue.map("tests.tasks:no_such_function", range(3), chunksize=2)
    assert queue.list() == [] and queue.status()["counts"]["queued"] == 0


def test_cli_submit_map_chunksize_and_wait(tmp_path: Path, db_path: str, processes) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(f"[{i}, 1]\n" for i in range(250)))
    out = run_cli(db_path, "submit", "tests.tasks:add", "--map", str(items), "--chunksize", "100", "--json")
    assert out.returncode == 0, out.stderr
    submitted = json.loads(out.stdout)
    assert submitted["items"] == 250 and submitted["jobs"] == 3
    q = jobq.Queue(db_path)
    assert len(q.group(submitted["group"]).job_ids) == 3
    processes.supervisor(db_path, "-c", "2")
    waited = run_cli(db_path, "wait", submitted["group"], "--timeout", "60")
    assert waited.returncode == 0, waited.stderr
    assert "250/250" in waited.stderr
    assert q.group(submitted["group"]).join(timeout=10) == [i + 1 for i in range(250)]
    for args in (["--chunksize", "0"], ["--chunksize", "x"]):
        bad = run_cli(db_path, "submit", "tests.tasks:add", "--map", str(items), *args)
        assert bad.returncode == 2 and "chunksize" in bad.stderr.lower(), bad.stderr
    bad = run_cli(db_path, "submit", "tests.tasks:add", "1", "--chunksize", "5")
    assert bad.returncode == 2 and "--chunksize" in bad.stderr
    assert len(q.list(limit=100)) == 3  # nothing more was stored


def test_a_long_chunk_reports_its_progress_in_items(queue: jobq.Queue) -> None:
    group = queue.map(tasks.slow_square, [(i, 0.01) for i in range(100)], chunksize=100)
    with jobq.Supervisor(queue, concurrency=1):
        record = wait_for(lambda: (r := queue.record(group.job_ids[0])).progress_message and r, what="the chunk's progress")
        assert record.progress_message.endswith("/100 items") and 0 < record.progress < 1
        assert group.join(timeout=30) == [i * i for i in range(100)]
