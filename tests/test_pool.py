"""jobq.Pool and jobq.Executor against multiprocessing.Pool and ProcessPoolExecutor on the same
inputs, and what a crash does to each: real supervisors, real workers, real signals."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import jobq
from tests import tasks
from tests.conftest import REPO, _env, run_cli, wait_for

pytestmark = pytest.mark.timeout(90)

FORK = multiprocessing.get_context("fork")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_pool_matches_multiprocessing_pool(db_path: str) -> None:
    items = list(range(-5, 40))
    pairs = [(i, i * 2) for i in range(20)]
    with FORK.Pool(2) as mp:
        expected = {
            "map": mp.map(tasks.square, items),
            "map_chunked": mp.map(tasks.square, items, chunksize=7),
            "map_async": mp.map_async(tasks.square, items, chunksize=4).get(30),
            "imap": list(mp.imap(tasks.square, items)),
            "imap_chunked": list(mp.imap(tasks.square, items, chunksize=6)),
            "imap_unordered": sorted(mp.imap_unordered(tasks.square, items, chunksize=5)),
            "starmap": mp.starmap(tasks.add, pairs),
            "starmap_async": mp.starmap_async(tasks.add, pairs, chunksize=3).get(30),
            "apply": mp.apply(tasks.add, (2,), {"y": 40}),
            "apply_async": [mp.apply_async(tasks.add, (i, i)).get(30) for i in range(5)],
            "empty": mp.map(tasks.square, []),
        }
    with jobq.Pool(2, db=db_path) as pool:
        assert pool.supervisor_pid is not None and _alive(pool.supervisor_pid)
        got = {
            "map": pool.map(tasks.square, items),
            "map_chunked": pool.map(tasks.square, items, chunksize=7),
            "map_async": pool.map_async(tasks.square, items, chunksize=4).get(30),
            "imap": list(pool.imap(tasks.square, items)),
            "imap_chunked": list(pool.imap(tasks.square, items, chunksize=6)),
            "imap_unordered": sorted(pool.imap_unordered(tasks.square, items, chunksize=5)),
            "starmap": pool.starmap(tasks.add, pairs),
            "starmap_async": pool.starmap_async(tasks.add, pairs, chunksize=3).get(30),
            "apply": pool.apply(tasks.add, (2,), {"y": 40}),
            "apply_async": [pool.apply_async(tasks.add, (i, i)).get(30) for i in range(5)],
            "empty": pool.map(tasks.square, []),
        }
        group_id = pool.group_id
        supervisor = pool.supervisor_pid
    assert got == expected
    wait_for(lambda: not _alive(supervisor), what="the pool's supervisor to exit")
    # Every task was a job in the file: the last map is a group anyone can read back.
    assert jobq.Queue(db_path).group(group_id).join(timeout=10) == []
    assert jobq.Queue(db_path).status()["counts"]["succeeded"] >= 8


def test_pool_async_results_callbacks_and_failures(db_path: str) -> None:
    seen: list[object] = []
    with jobq.Pool(2, db=db_path) as pool:
        ok = pool.apply_async(tasks.add, (1, 2), callback=seen.append)
        bad = pool.apply_async(tasks.fail, ("nope",), error_callback=seen.append)
        assert ok.get(timeout=30) == 3 and ok.ready() and ok.successful()
        bad.wait(30)
        assert bad.ready() and not bad.successful()
        with pytest.raises(jobq.JobFailed) as info:
            bad.get()
        assert info.value.error_type == "ValueError" and info.value.message == "nope"
        # each callback once, in the order the two jobs finished (they ran side by side)
        assert len(seen) == 2 and 3 in seen and sum(isinstance(x, jobq.JobFailed) for x in seen) == 1
        slow = pool.apply_async(tasks.sleep, (5,))
        with pytest.raises(ValueError):
            slow.successful()  # not ready
        with pytest.raises(multiprocessing.TimeoutError):
            slow.get(timeout=0.1)
        slow.job.cancel()
        with pytest.raises(jobq.JobFailed) as info:
            pool.map(tasks.fail_at, range(30), chunksize=4)  # item 13 raises: its index, not its chunk's
        assert info.value.index == 13 and info.value.error_type == "ValueError"
        it = pool.imap(tasks.fail_at, [12, 13, 14])  # a failure is raised at its turn; iteration goes on
        assert next(it) == 120
        with pytest.raises(jobq.JobFailed):
            next(it)
        assert next(it) == 140
        r = pool.map_async(tasks.fail_at, range(20), chunksize=3, error_callback=seen.append)
        with pytest.raises(jobq.JobFailed):
            r.get(30)
    assert isinstance(seen[-1], jobq.JobFailed)


def test_pool_failure_names_the_item_index(db_path: str) -> None:
    with jobq.Pool(2, db=db_path) as pool:
        for chunksize in (1, 4):
            with pytest.raises(jobq.JobFailed) as info:
                pool.starmap(tasks.fail_at, [(i, 13) for i in range(30)], chunksize=chunksize)
            assert info.value.index == 13 and "bad item 13" in info.value.message
        assert list(pool.imap(tasks.fail_at, range(3))) == [0, 10, 20]


def test_pool_close_join_terminate(db_path: str) -> None:
    q = jobq.Queue(db_path)
    pool = jobq.Pool(2, db=db_path)
    results = [pool.apply_async(tasks.slow_square, (i, 0.05)) for i in range(6)]
    with pytest.raises(ValueError):
        pool.join()  # still running
    pool.close()
    with pytest.raises(ValueError):
        pool.apply_async(tasks.add, (1,))
    supervisor = pool.supervisor_pid
    pool.join()  # waits for every task, then stops the supervisor
    assert [r.get(0) for r in results] == [i * i for i in range(6)]
    assert not _alive(supervisor) and pool.supervisor_pid is None

    pool = jobq.Pool(1, db=db_path)
    long = pool.apply_async(tasks.sleep, (30,))
    queued = pool.map_async(tasks.sleep, [30, 30])
    wait_for(lambda: long.job.state == "running", what="the long task to start")
    supervisor = pool.supervisor_pid
    started = time.monotonic()
    pool.terminate()
    pool.join()
    assert time.monotonic() - started < 15
    assert not _alive(supervisor)
    assert {q.get(i).state for i in queued.group.job_ids} == {"cancelled"}
    assert long.job.state == "cancelled"


def test_worker_sigkilled_in_pool_map_fails_that_item_alone(db_path: str) -> None:
    """A worker SIGKILLed mid-map fails its item alone with WorkerDied (the signal named);
    the other items succeed and the pool goes on (multiprocessing.Pool hangs here)."""
    with jobq.Pool(2, db=db_path) as pool:
        with pytest.raises(jobq.JobFailed) as info:
            pool.map(tasks.square_or_die, range(8), chunksize=1)
        failed = info.value
        assert failed.index == 3 and failed.error_type == "WorkerDied" and "SIGKILL" in failed.message
        group = jobq.Queue(db_path).group(pool.group_id)
        wait_for(lambda: group.counts() == {"succeeded": 7, "failed": 1}, what="the other items to finish")
        states = {i: jobq.Queue(db_path).get(job_id).state for i, job_id in enumerate(group.job_ids)}
        assert [i for i, s in states.items() if s != "succeeded"] == [3]
        assert pool.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]  # the pool goes on
        assert sorted(pool.imap_unordered(tasks.square_or_die, [0, 1, 2], chunksize=1)) == [0, 1, 4]
    with jobq.Executor(2, db=db_path) as ex:
        futures = [ex.submit(tasks.square_or_die, i) for i in range(6)]
        cf.wait(futures, timeout=30)
        with pytest.raises(jobq.JobFailed, match="SIGKILL"):
            futures[3].result()
        assert [f.result() for i, f in enumerate(futures) if i != 3] == [0, 1, 4, 16, 25]
        assert ex.submit(tasks.add, 1, 1).result(timeout=30) == 2  # goes on


KILLED_PROGRAM = """
import logging, sys
import jobq
from tests import tasks
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
pool = jobq.Pool(2, db=sys.argv[1])
print("supervisor", pool.supervisor_pid, flush=True)
print(pool.map(tasks.slow_square, range(40), chunksize=1))
"""


def test_program_killed_mid_map_leaves_its_tasks_and_results_are_collected(tmp_path: Path, db_path: str, processes) -> None:
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED_PROGRAM))
    err = open(tmp_path / "killed.err", "w+")
    proc = subprocess.Popen(
        [sys.executable, str(script), db_path], cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=err, text=True
    )
    supervisor = None
    try:
        line = proc.stdout.readline()
        supervisor = int(line.split()[1])
        q = jobq.Queue(db_path)
        wait_for(lambda: q.status()["counts"]["succeeded"] >= 4, what="a few items to finish")
        proc.send_signal(signal.SIGKILL)  # the program dies mid-map
        proc.wait(10)
        # Its embedded supervisor follows it (drains: running items finish) and exits.
        wait_for(lambda: not _alive(supervisor), what="the embedded supervisor to exit")
        err.seek(0)
        group_id = re.search(r"as group (g\d+)", err.read()).group(1)
        counts = q.group(group_id).counts()
        assert 4 <= counts.get("succeeded", 0) < 40 and counts.get("queued", 0) > 0  # the rest wait in the file
        processes.supervisor(db_path, "-c", "2")
        waited = run_cli(db_path, "wait", group_id, "--timeout", "60")
        assert waited.returncode == 0, waited.stderr
        assert q.group(group_id).join(timeout=30) == [x * x for x in range(40)]
    finally:
        for pid in (proc.pid, supervisor):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)
        err.close()


def test_executor_matches_process_pool_executor(db_path: str) -> None:
    items = list(range(25))
    with cf.ProcessPoolExecutor(2, mp_context=FORK) as peer:
        expected = {
            "submit": [peer.submit(tasks.add, i, y=3).result() for i in items[:8]],
            "map": list(peer.map(tasks.add, items, items)),
            "map_chunked": list(peer.map(tasks.square, items, chunksize=4)),
            "as_completed": sorted(f.result() for f in cf.as_completed([peer.submit(tasks.square, i) for i in items])),
        }
    with jobq.Executor(2, db=db_path) as ex:
        assert isinstance(ex, cf.Executor)
        futures = [ex.submit(tasks.square, i) for i in items]
        assert all(isinstance(f, cf.Future) for f in futures)
        got = {
            "submit": [ex.submit(tasks.add, i, y=3).result(timeout=30) for i in items[:8]],
            "map": list(ex.map(tasks.add, items, items)),
            "map_chunked": list(ex.map(tasks.square, items, chunksize=4)),
            "as_completed": sorted(f.result() for f in cf.as_completed(futures, timeout=30)),
        }
        done, not_done = cf.wait([ex.submit(tasks.add, 1)], timeout=30)
        assert len(done) == 1 and not not_done

        async def awaited() -> int:
            return await asyncio.wrap_future(ex.submit(tasks.add, 20, 22))

        assert asyncio.run(awaited()) == 42
        bad = ex.submit(tasks.fail, "no")
        with pytest.raises(jobq.JobFailed):
            bad.result(timeout=30)
        assert isinstance(bad.exception(), jobq.JobFailed)
        with pytest.raises(jobq.JobFailed) as info:
            list(ex.map(tasks.fail_at, range(10), [6] * 10, chunksize=3))
        assert info.value.index == 6
        with pytest.raises(TimeoutError):
            list(ex.map(tasks.sleep, [30], timeout=0.2))
        q = jobq.Queue(db_path)
        q.cancel(*q.group(ex.group_id).job_ids)  # or shutdown would wait for it
    assert got == expected


def test_executor_shutdown_cancel_futures(db_path: str) -> None:
    ex = jobq.Executor(1, db=db_path)
    running = ex.submit(tasks.sleep, 0.5)
    wait_for(lambda: running.job.state == "running", what="the first call to start")
    pending = [ex.submit(tasks.sleep, 30) for _ in range(3)]
    assert not running.cancel()  # running: cannot be cancelled, as with the standard executors
    supervisor = ex.supervisor_pid
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() == 0.5
    assert all(f.cancelled() for f in pending)
    assert {f.job.state for f in pending} == {"cancelled"}
    assert not _alive(supervisor)
    with pytest.raises(RuntimeError):
        ex.submit(tasks.add, 1)
    with pytest.raises(ValueError):
        jobq.Executor(0, db=db_path)
    with pytest.raises(jobq.ValidationError):
        jobq.Executor(1, db=db_path, bogus=True)


def test_pool_outlives_its_supervisor(db_path: str) -> None:
    """The embedded supervisor SIGKILLed mid-map: another starts, takes back its jobs at once
    (its lock file is free) and the map completes, every result in order."""
    with jobq.Pool(2, db=db_path) as pool:
        result = pool.map_async(tasks.slow_square, [(i) for i in range(30)], chunksize=1)
        q = jobq.Queue(db_path)
        wait_for(lambda: q.group(result.group_id).counts().get("succeeded", 0) >= 3, what="a few items")
        first = pool.supervisor_pid
        os.kill(first, signal.SIGKILL)
        assert result.get(timeout=60) == [i * i for i in range(30)]
        assert pool.supervisor_pid != first and _alive(pool.supervisor_pid)
        assert pool.map(tasks.square, range(3)) == [0, 1, 4]


def test_maxtasksperchild_recycles_workers(db_path: str) -> None:
    with jobq.Pool(1, db=db_path, maxtasksperchild=2) as pool:
        pids = [pool.apply(tasks.pid) for _ in range(6)]
    assert len(set(pids)) == 3  # a new worker every two tasks, as with multiprocessing.Pool
    with pytest.raises(ValueError):
        jobq.Pool(1, db=db_path, maxtasksperchild=0)
    with pytest.raises(ValueError):
        jobq.Pool(0, db=db_path)


def test_pool_and_executor_on_postgresql(pg_url: str) -> None:
    with jobq.Pool(2, db=pg_url) as pool:
        assert pool.map(tasks.square, range(50), chunksize=7) == [x * x for x in range(50)]
        assert sorted(pool.imap_unordered(tasks.square, range(10))) == [x * x for x in range(10)]
        assert pool.apply_async(tasks.add, (1, 2)).get(timeout=30) == 3
    with jobq.Executor(2, db=pg_url) as ex:
        assert [f.result(timeout=30) for f in [ex.submit(tasks.add, i, 1) for i in range(5)]] == [1, 2, 3, 4, 5]
