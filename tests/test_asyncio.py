"""asyncio: ``async def`` targets in the workers, async callers that never block the loop,
``async with Supervisor``, and the ``@q.task`` decorator."""

from __future__ import annotations

import asyncio
import time

import pytest

import jobq
from tests import tasks
from tests.conftest import failure_of, wait_for

pytestmark = pytest.mark.timeout(90)


def test_async_targets_run_on_one_loop_per_worker(queue: jobq.Queue) -> None:
    loops = [queue.submit(tasks.async_loop_id) for _ in range(3)]
    square = queue.submit(tasks.async_square, (9,))
    printed = queue.submit(tasks.async_print, (3,))
    failing = queue.submit(tasks.async_fail)
    chunked = queue.map(tasks.async_square, range(20), chunksize=6)
    plain = queue.submit(tasks.add, (1, 1))  # plain functions still run on the same worker
    with jobq.Supervisor(queue, concurrency=1):
        seen = {tuple(job.join(timeout=30)) for job in loops}
        assert len(seen) == 1  # one worker, one loop kept for its life
        assert square.join(timeout=30) == 81
        assert printed.join(timeout=30) == 3 and "async Worker: 3" in printed.logs()
        err = failure_of(failing, 30)
        assert err.error_type == "ValueError" and err.message == "async boom"
        assert chunked.join(timeout=30) == [x * x for x in range(20)]
        with pytest.raises(jobq.JobFailed) as info:
            queue.map(tasks.async_fail_at, range(20), chunksize=8).join(timeout=30)
        assert info.value.index == 13 and info.value.error_type == "ValueError"
        assert plain.join(timeout=30) == 2
        killed = queue.submit(tasks.async_kill_self)
        err = failure_of(killed, 30)
        assert err.error_type == "WorkerDied" and "SIGKILL" in err.message
        after = queue.submit(tasks.async_loop_id)
        pid, _ = after.join(timeout=30)
        assert pid != next(iter(seen))[0]  # a new worker, with a loop of its own


def test_async_jobs_time_out_and_cancel(queue: jobq.Queue) -> None:
    sleeping = queue.submit(tasks.async_sleep, (30,), timeout=0.5)
    spinning = queue.submit(tasks.async_spin, (30,), timeout=0.5)  # never awaits
    with jobq.Supervisor(queue, concurrency=2):
        started = time.monotonic()
        for job in (sleeping, spinning):
            err = failure_of(job, 30)
            assert err.error_type == "JobTimeout"
        assert time.monotonic() - started < 20
        cancelled = queue.submit(tasks.async_sleep, (30,))
        wait_for(lambda: cancelled.state == "running", what="the async job to run")
        cancelled.cancel()
        err = failure_of(cancelled, 30)
        assert err.state == "cancelled"
        assert queue.submit(tasks.async_square, (4,)).join(timeout=30) == 16  # the workers go on


def test_async_callers_never_block_the_loop(queue: jobq.Queue) -> None:
    """A 10 ms ticker runs beside 500 concurrent ajoins; no tick is late by 250 ms."""

    async def main() -> None:
        lateness: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            expected = loop.time()
            while not stop.is_set():
                expected += 0.01
                await asyncio.sleep(max(0.0, expected - loop.time()))
                lateness.append(loop.time() - expected)
                expected = max(expected, loop.time())

        tick = asyncio.create_task(ticker())
        async with jobq.Supervisor(queue, concurrency=2):
            group = await queue.amap(tasks.slow_square, [(i, 0.002) for i in range(500)])
            jobs = group.jobs
            results = await asyncio.gather(*(job.ajoin(timeout=60) for job in jobs))
            assert results == [i * i for i in range(500)]
            assert await group.ajoin(timeout=10) == results
            one = await queue.asubmit(tasks.add, (20,), {"y": 22})
            assert await one.ajoin(timeout=30) == 42
            slow = await queue.asubmit(tasks.sleep, (30,))
            with pytest.raises(TimeoutError):
                await slow.ajoin(timeout=0.2)
            slow.cancel()
            with pytest.raises(jobq.JobFailed):
                await slow.ajoin(timeout=30)
            bad = await queue.amap(tasks.fail_at, range(30), chunksize=4)
            with pytest.raises(jobq.JobFailed) as info:
                await bad.ajoin(timeout=30)
            assert info.value.index == 13
        stop.set()
        await tick
        assert len(lateness) > 20
        assert max(lateness) < 0.25, f"a tick was {max(lateness) * 1000:.0f} ms late"

    asyncio.run(main())


def test_async_join_on_postgresql(pg_url: str) -> None:
    q = jobq.Queue(pg_url)

    async def main() -> list[int]:
        async with jobq.Supervisor(q, concurrency=2):
            jobs = [await q.asubmit(tasks.async_square, (i,)) for i in range(20)]
            group = await q.amap(tasks.square, range(30), chunksize=4)
            assert await group.ajoin(timeout=30) == [i * i for i in range(30)]
            return await asyncio.gather(*(job.ajoin(timeout=30) for job in jobs))

    assert asyncio.run(main()) == [i * i for i in range(20)]


def test_task_decorator(queue: jobq.Queue) -> None:
    cube = queue.task(tasks.cube, retries=2, priority=5, timeout=30)
    assert cube is tasks.cube and cube(3) == 27  # still callable directly
    plain = queue.task(tasks.add)
    with pytest.raises(jobq.ValidationError):
        queue.task(tasks.add, key="k")
    job = cube.submit(2)
    record = job.refresh()
    assert record.priority == 5 and record.max_attempts == 3 and record.timeout == 30
    group = cube.map(range(10), chunksize=3)
    assert group.chunksize == 3 and len(group) == 10

    async def main() -> int:
        j = await cube.asubmit(4)
        return await j.ajoin(timeout=30)

    with jobq.Supervisor(queue, concurrency=2):
        assert job.join(timeout=30) == 8
        assert group.join(timeout=30) == [x**3 for x in range(10)]
        assert asyncio.run(main()) == 64
        assert plain.submit(1, y=5).join(timeout=30) == 6

    @queue.task(queue="other")
    def local(x: int) -> int:
        return x

    with pytest.raises(jobq.ValidationError):  # not importable by its module path
        local.submit(1)
    assert queue.list(queue="other") == []
