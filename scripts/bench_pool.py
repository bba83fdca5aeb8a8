"""Issue 11 rows of scripts/bench.py: chunked maps against ``multiprocessing.Pool.map``.

The same no-op function (``bench_tasks.add``), the same N items, the same number of workers,
interleaved in one run, jobq with every durability guarantee in place (each chunk a job in
the database, its results stored). Two figures each: "cold", from creating the pool (jobq:
submitting with no supervisor up, then starting one) to holding every result of a first
map, as the drain rows measure Pool.map; and "warm", a second map on the started pool.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import bench_tasks
from bench_common import FORK, Check, Report, Sizes, _median_of, say
from bench_limit import stepper

import jobq

CHUNKSIZE = 1000  # q.map(..., chunksize=CHUNKSIZE)


def items_for(s: Sizes) -> int:
    """Items per map: 200,000 in the full run, 5,000 with --quick."""
    return s.map_items


def mp_pool_map(n: int, workers: int) -> tuple[float, float]:
    """(seconds from creating the pool to the first map's results, seconds of a second map)."""
    t0 = time.perf_counter()
    pool = FORK.Pool(workers)
    try:
        results = pool.map(bench_tasks.add, range(n))
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = pool.map(bench_tasks.add, range(n))
        warm = time.perf_counter() - t0
    finally:  # workers leave on their own: no signal needed
        pool.close()
        pool.join()
    assert results[-1] == n and again == results
    return cold, warm


def jobq_queue_map(db: str, n: int, workers: int, chunksize: int) -> tuple[float, float]:
    """q.map(chunksize) + join: (from submitting with no supervisor up to the results, incl.
    starting one; the same once it runs)."""
    q = jobq.Queue(db)
    t0 = time.perf_counter()
    group = q.map(bench_tasks.add, range(n), chunksize=chunksize)
    with jobq.Supervisor(q, concurrency=workers):
        results = group.join(timeout=600)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = q.map(bench_tasks.add, range(n), chunksize=chunksize).join(timeout=600)
        warm = time.perf_counter() - t0
    assert results[-1] == n and again == results
    return cold, warm


def jobq_pool_map(db: str, n: int, workers: int) -> tuple[float, float]:
    """As :func:`mp_pool_map`, for jobq.Pool."""
    jobq.Queue(db)  # the schema exists: a database in use, as for the Pool peer's pickling
    t0 = time.perf_counter()
    with jobq.Pool(workers, db=db) as pool:
        results = pool.map(bench_tasks.add, range(n))
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = pool.map(bench_tasks.add, range(n))
        warm = time.perf_counter() - t0
    assert results[-1] == n and again == results
    return cold, warm


def _pool_run(rep: Report, s: Sizes, workers: int, d: Path, r: int, n: int) -> dict[str, float]:
    """One run of each map (a peer's or a jobq row's failure is reported, the others still run)."""
    fig: dict[str, float] = {}
    step = stepper(rep, r, s, fig)

    def measure(key: str, fn: Callable[[], tuple[float, float]]) -> None:
        cold, warm = fn()
        fig[f"map.cold.{key}"] = n / cold
        fig[f"map.warm.{key}"] = n / warm

    if s.peers:
        step("map.pool_map", "multiprocessing.Pool.map", lambda: measure("pool_map", lambda: mp_pool_map(n, workers)))
    qmap, pool_db = str(d / "qmap.db"), str(d / "pool.db")
    step(
        "map.jobq_chunked",
        f"q.map(chunksize={CHUNKSIZE})",
        lambda: measure("jobq_chunked", lambda: jobq_queue_map(qmap, n, workers, CHUNKSIZE)),
    )
    step("map.jobq_pool", "jobq.Pool.map", lambda: measure("jobq_pool", lambda: jobq_pool_map(pool_db, n, workers)))
    return fig


def section_pool(rep: Report, s: Sizes, workers: int, tmp: Path) -> None:
    n = items_for(s)
    say(f"maps: {n:,} items, {workers} workers, {s.repeat} run(s)")
    runs: list[dict[str, float]] = []
    for r in range(s.repeat):
        d = tmp / f"pool{r}"
        d.mkdir()
        runs.append(_pool_run(rep, s, workers, d, r, n))
        shutil.rmtree(d, ignore_errors=True)
    labels = {
        "pool_map": "multiprocessing.Pool.map",
        "jobq_chunked": f"jobq q.map(chunksize={CHUNKSIZE}) + join",
        "jobq_pool": "jobq.Pool.map (default chunksize)",
    }
    for key, value in _median_of(runs).items():
        kind, who = key.split(".")[1:]
        rep.add(key, value, "jobs/s", labels[who] + (", warm" if kind == "warm" else ""))


def target_checks(f: dict[str, float]) -> list[Check]:
    def ratio(a: str) -> float | None:
        return f[a] / f["map.cold.pool_map"] if a in f and "map.cold.pool_map" in f else None

    return [
        ("q.map(chunksize) >= 0.5x Pool.map", ratio("map.cold.jobq_chunked"), ">=", 0.5, "x"),
        ("jobq.Pool.map >= 0.5x Pool.map", ratio("map.cold.jobq_pool"), ">=", 0.5, "x"),
    ]


def render_rows(f: dict[str, float], row: Callable[[str, str], None], lines: list[str]) -> None:
    if not any(k.startswith("map.") for k in f):
        return
    for kind, title in (
        ("cold", "maps (items/s, from creating the pool / submitting with no supervisor up, to every result back)"),
        ("warm", "maps, second map on the started pool (items/s)"),
    ):
        peer = f.get(f"map.{kind}.pool_map")
        lines.append(title)
        for key in ("jobq_chunked", "jobq_pool", "pool_map"):
            k = f"map.{kind}.{key}"
            row(k, f"jobq/peer {f[k] / peer:.2f}x" if peer and k in f and key != "pool_map" else "")
    lines.append("targets (issue 11; on the first rows)")
    for name, value, _, bound, _ in target_checks(f):
        if value is not None:
            lines.append(f"  [{'PASS' if value >= bound else 'MISS'}] {name}: {value:.2f}x")
