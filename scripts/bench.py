"""Benchmark jobq against its peers in one run, on one workload (``add(x) -> x + 1``) and the
same number of worker processes (issue 5).

Peers: ``multiprocessing.Pool`` (``apply_async`` one by one, and ``map``: the non-durable
ceiling), a bare SQLite claim/complete loop in batches of 32 (the file's ceiling), Huey on
SQLite with process workers, and RQ when Redis answers on 127.0.0.1:6379. On PostgreSQL
(scripts/bench_pg.py, issue 6; ``--postgres URL``, default ``$JOBQ_TEST_POSTGRES`` or the local
test server): jobq beside procrastinate and Celery (RabbitMQ and/or Redis, whichever answer).
The peers are the ``bench`` extra (``pip install -e '.[bench]'``); without a package or its
server, its rows are skipped with the reason.

    python scripts/bench.py                    # full run: a few minutes
    python scripts/bench.py --quick            # every workload on small N, well under a minute
    python scripts/bench.py --json out.json    # also write the figures
    python scripts/bench.py --only drain,latency --repeat 5
    python scripts/bench.py --only postgres    # the PostgreSQL rows alone
    python scripts/bench.py --against 47f5756  # that commit's jobq and the working tree's, interleaved

Figures are medians of ``--repeat`` runs (the runs of the peers are interleaved with jobq's,
so a change in the machine's load hits everyone). Drain times run from the start of the
supervisor (pool, consumer, workers) to the last result stored. Each peer's run is a process of
its own (scripts/bench_limit.py): one still running after ``--step-timeout`` seconds is ended,
every process it started with it, and reported as an error while the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # bench_common, whatever the cwd
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_against  # noqa: E402
import bench_dashboard  # noqa: E402
import bench_durability  # noqa: E402
import bench_flow  # noqa: E402 - issue 17: the cost of rates and partitions on the drain
import bench_peers  # noqa: E402
import bench_pg  # noqa: E402
import bench_pool  # noqa: E402 - issue 11: chunked maps against multiprocessing.Pool.map
import bench_startup  # noqa: E402
import bench_steps  # noqa: E402 - issue 16: durable steps against DBOS
from bench_common import (  # noqa: E402 - also puts the checkout's jobq and bench_tasks on sys.path
    FORK,
    FULL,
    QUICK,
    SCRIPTS,
    SOURCE,
    TARGET,
    Check,
    Report,
    Sizes,
    _children,
    _end_process,
    _median_of,
    _rss_mb,
    _run_burst_supervisor,
    _wait_until,
    compile_source,
    judge_targets,
    measure_latency,
    render,
    say,
    stop_on_sigterm,
)
from bench_limit import stepper  # noqa: E402 - each peer's run in a process of its own, under a time limit

import jobq  # noqa: E402

SECTIONS = ("drain", "submit", "latency", "scale", "memory", "postgres", "pool", "durability", "startup", "steps", "flow")


# -- jobq ------------------------------------------------------------------------------------
def _wait_succeeded(q: jobq.Queue, at_least: int, timeout: float, interval: float = 0.002) -> dict[str, int]:
    """Poll until ``at_least`` jobs succeeded. Each look reads the count table alone (about
    20 µs of CPU; ``q.status()``, which also checks every supervisor's liveness, costs 110 µs:
    every 2 ms, 5% of one of the two cores the measured drain runs on)."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = {}
        for states in q.store.counts().values():
            for state, n in states.items():
                counts[state] = counts.get(state, 0) + n
        if counts.get("succeeded", 0) >= at_least:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {counts.get('succeeded', 0)}/{at_least} jobs succeeded after {timeout:g}s: {counts}")
        time.sleep(interval)


def jobq_drain(db: str, workers: int, expect_succeeded: int, timeout: float = 600, cpu: list[float] | None = None) -> float:
    """Seconds from starting a burst supervisor to ``expect_succeeded`` results stored; the CPU
    seconds of the supervisor, its workers and checkpointer go to ``cpu`` (a figure that other
    work on the machine disturbs far less than the wall clock)."""
    q = jobq.Queue(db)
    proc = FORK.Process(target=_run_burst_supervisor, args=(db, workers), name="bench-jobq-supervisor")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc.start()
    try:
        _wait_succeeded(q, expect_succeeded, timeout)
        elapsed = time.perf_counter() - t0
        proc.join(60)
    finally:
        _end_process(proc)
    if cpu is not None and proc.exitcode == 0:  # every process of it waited for: their CPU is counted
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def _fill(db: str, n: int, start: int = 0) -> None:
    jobq.Queue(db).submit_many(TARGET, ((i,) for i in range(start, start + n)))


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), str(SOURCE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _cli(db: str, *args: str, timeout: float = 300) -> float:
    """Run ``python -m jobq --db DB ARGS``; its wall time in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jobq", "--db", db, *args],
        cwd=SOURCE,
        env=_cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"jobq {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


# -- sections --------------------------------------------------------------------------------
def _throughput_run(
    rep: Report, s: Sizes, workers: int, d: Path, r: int, sections: set[str], huey_reason: str | None, rq_reason: str | None
) -> dict[str, float]:
    fig: dict[str, float] = {}
    peer = stepper(rep, r, s, fig)

    if "drain" in sections:
        db = str(d / "drain.db")
        _fill(db, s.drain)
        say(f"  run {r + 1}/{s.repeat}: jobq drain of {s.drain}")
        cpu: list[float] = []
        fig["drain.jobq"] = s.drain / jobq_drain(db, workers, s.drain, cpu=cpu)
        if cpu:
            fig["drain.jobq_cpu_us"] = 1e6 * cpu[0] / s.drain

        def pool() -> None:
            fig["drain.pool_apply_async"] = s.drain / bench_peers.pool_apply_async(s.drain, workers)
            fig["drain.pool_map"] = s.drain / bench_peers.pool_map(s.drain, workers)

        def bare() -> None:
            path = str(d / "bare.db")
            fig["submit.sqlite_bulk"] = s.drain / bench_peers.sqlite_insert(path, s.drain)
            fig["drain.sqlite_batch"] = s.drain / bench_peers.sqlite_drain(path, s.drain, workers)

        if s.peers:
            peer("pool", "multiprocessing.Pool", pool)
            peer("sqlite", "bare SQLite", bare)
    if "drain" in sections and s.peers and not huey_reason:

        def hueys() -> None:
            submit, drain = bench_peers.huey_run(str(d / "huey.db"), s.drain, workers)
            fig["submit.huey_single"] = s.drain / submit
            fig["drain.huey"] = s.drain / drain

        peer("huey", "Huey", hueys)
    if "drain" in sections and s.peers and not rq_reason:

        def rqs() -> None:
            submit, drain = bench_peers.rq_run(s.rq, workers)
            fig["submit.rq_single"] = s.rq / submit
            fig["drain.rq"] = s.rq / drain

        peer("rq", f"RQ ({s.rq} jobs)", rqs)
    if "submit" in sections:
        say(f"  run {r + 1}/{s.repeat}: jobq submits")
        q = jobq.Queue(str(d / "single.db"))
        q.submit(TARGET, (0,))  # schema created, target imported: not timed
        t0 = time.perf_counter()
        for i in range(s.single):
            q.submit(TARGET, (i,))
        fig["submit.jobq_single"] = s.single / (time.perf_counter() - t0)
        q = jobq.Queue(str(d / "bulk.db"))
        q.submit(TARGET, (0,))
        t0 = time.perf_counter()
        q.submit_many(TARGET, [(i,) for i in range(s.bulk)])
        fig["submit.jobq_bulk"] = s.bulk / (time.perf_counter() - t0)
        jsonl = d / "jobs.jsonl"
        jsonl.write_text("".join(f"[{i}]\n" for i in range(s.bulk)))
        cli_db = str(d / "cli.db")
        jobq.Queue(cli_db)
        fig["submit.jobq_cli_bulk"] = s.bulk / _cli(cli_db, "submit", TARGET, "--file", str(jsonl))
        if s.peers:
            fig["submit.sqlite_bulk_big"] = s.bulk / bench_peers.sqlite_insert(str(d / "bare-bulk.db"), s.bulk)
            fig["submit.sqlite_bulk_jobq_rows"] = s.bulk / bench_peers.sqlite_insert_jobq_rows(
                str(d / "bare-jobq-rows.db"), str(d / "bulk.db"), s.bulk
            )
    return fig


def section_throughput(rep: Report, s: Sizes, workers: int, tmp: Path, sections: set[str]) -> None:
    huey_reason, rq_reason = (bench_peers.huey_reason(), bench_peers.rq_reason()) if s.peers else (None, None)
    for peer, reason in (("huey", huey_reason), ("rq", rq_reason)):
        if reason:
            rep.skipped[peer] = reason
            say(f"{peer}: skipped: {reason}")
    runs: list[dict[str, float]] = []
    for r in range(s.repeat):
        d = tmp / f"run{r}"
        d.mkdir()
        runs.append(_throughput_run(rep, s, workers, d, r, sections, huey_reason, rq_reason))
        shutil.rmtree(d, ignore_errors=True)
    labels = {
        "drain.jobq": "jobq (Supervisor, burst)",
        "drain.jobq_cpu_us": "jobq drain: CPU of supervisor + workers per job",
        "drain.pool_apply_async": "multiprocessing.Pool.apply_async",
        "drain.pool_map": "multiprocessing.Pool.map",
        "drain.sqlite_batch": f"bare SQLite, batches of {bench_peers.SQLITE_BATCH}",
        "drain.huey": "Huey (SqliteHuey, process consumer)",
        "drain.rq": f"RQ (forking Worker, Redis; {s.rq} jobs)",
        "submit.jobq_single": "jobq q.submit, one by one",
        "submit.huey_single": "Huey enqueue, one by one",
        "submit.rq_single": f"RQ enqueue, one by one ({s.rq} jobs)",
        "submit.jobq_bulk": f"jobq q.submit_many ({s.bulk:,} jobs)",
        "submit.jobq_cli_bulk": f"jobq submit --file (CLI incl. start-up, {s.bulk:,})",
        "submit.sqlite_bulk_big": f"bare SQLite executemany ({s.bulk:,} jobs)",
        "submit.sqlite_bulk_jobq_rows": f"bare executemany, jobq's rows and table ({s.bulk:,})",
        "submit.sqlite_bulk": f"bare SQLite executemany ({s.drain:,} jobs)",
    }
    for key, value in _median_of(runs).items():
        rep.add(key, value, "us" if key.endswith("_cpu_us") else "jobs/s", labels[key])


def section_latency(rep: Report, s: Sizes, workers: int, tmp: Path) -> None:
    say(f"latency: {s.latency} submit+join round trips, then idle CPU over {s.idle_seconds:g}s")
    measure_latency(rep, jobq.Queue(str(tmp / "latency.db")), s, workers, "", "")


def _scale_run(db: str, s: Sizes, workers: int, offset: int) -> dict[str, float]:
    """One run of the scale figures on one file (which it leaves as it found it)."""
    q = jobq.Queue(db)
    fig: dict[str, float] = {}
    base = q.status()["counts"]["succeeded"]
    _fill(db, s.scale_claim, offset)
    fig["claim"] = s.scale_claim / jobq_drain(db, workers, base + s.scale_claim)
    fig["status_cli_ms"] = statistics.median(_cli(db, "status") * 1000 for _ in range(s.status_cli_runs))
    times = []
    for _ in range(s.status_calls):
        t0 = time.perf_counter()
        q.status()
        times.append((time.perf_counter() - t0) * 1000)
    fig["status_api_ms"] = statistics.median(times)
    t0 = time.perf_counter()
    for i in range(s.scale_submit):
        q.submit(TARGET, (i,))
    fig["submit"] = s.scale_submit / (time.perf_counter() - t0)
    # Those jobs were only there to be submitted: gone before the next run's claim.
    conn = sqlite3.connect(db, isolation_level=None, timeout=60)
    conn.execute("DELETE FROM jobs WHERE state='queued'")
    conn.close()
    return fig


def build_full_file(db: str, total: int) -> float:
    """``total`` jobs, all finished (2% failed): bulk-inserted with submit_many, then marked
    finished with a direct UPDATE (benchmark setup only: running them would take minutes)."""
    t0 = time.perf_counter()
    chunk = 100_000
    q = jobq.Queue(db)
    for start in range(0, total, chunk):
        q.submit_many(TARGET, ((i,) for i in range(start, min(total, start + chunk))))
    error = json.dumps({"type": "ValueError", "message": "boom", "traceback": ""})
    conn = sqlite3.connect(db, isolation_level=None, timeout=60)
    (hi,) = conn.execute("SELECT max(id) FROM jobs").fetchone()
    for lo in range(0, hi + 1, chunk):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE jobs SET state = CASE WHEN id % 50 = 0 THEN 'failed' ELSE 'succeeded' END, attempts = 1, "
            "started_at = created_at, finished_at = created_at, owner = 'bench', "
            "result = CASE WHEN id % 50 = 0 THEN NULL ELSE CAST(id + 1 AS TEXT) END, "
            "error = CASE WHEN id % 50 = 0 THEN ? ELSE NULL END "
            "WHERE id BETWEEN ? AND ? AND state = 'queued'",
            (error, lo, lo + chunk - 1),
        )
        conn.execute("COMMIT")
    # jobq counts every move in its own transitions; this setup UPDATE went around them.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM job_counts")
    conn.execute("INSERT INTO job_counts(queue, state, n) SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    actual = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    conn.close()
    counted = {k: v for k, v in q.status()["counts"].items() if v}
    if counted != actual:  # the direct UPDATE must leave jobq's own bookkeeping right
        raise RuntimeError(f"job counts out of step after the setup UPDATE: status says {counted}, the table {actual}")
    return time.perf_counter() - t0


def section_scale(rep: Report, s: Sizes, workers: int, tmp: Path) -> None:
    say(f"scale: building a file of {s.scale_jobs:,} finished jobs")
    full_db, empty_db = str(tmp / "full.db"), str(tmp / "empty.db")
    build = build_full_file(full_db, s.scale_jobs)
    in_file = jobq.Queue(full_db).status()["counts"]
    jobq.Queue(empty_db)
    say(f"scale: built in {build:.1f}s; measuring the empty and the full file in turn")
    empty_runs, full_runs = [], []
    for r in range(s.repeat):  # interleaved, so a change in the machine's load hits both
        say(f"  run {r + 1}/{s.repeat}")
        empty_runs.append(_scale_run(empty_db, s, workers, 0))
        full_runs.append(_scale_run(full_db, s, workers, s.scale_jobs))
    empty, full = _median_of(empty_runs), _median_of(full_runs)
    rep.add("scale.jobs_in_file", float(sum(in_file.values())), "jobs", "jobs in the full file (all finished)")
    rep.add("scale.build_seconds", build, "s", "building it (setup)")
    what = {
        "claim": ("jobs/s", f"claim: drain of {s.scale_claim:,} new jobs"),
        "status_cli_ms": ("ms", "`jobq status` (CLI, incl. start-up)"),
        "status_api_ms": ("ms", "q.status()"),
        "submit": ("jobs/s", f"q.submit ({s.scale_submit:,} one by one)"),
    }
    for key, (unit, label) in what.items():
        rep.add(f"scale.{key}_empty", empty[key], unit, f"{label}, empty file")
        rep.add(f"scale.{key}_full", full[key], unit, f"{label}, full file")
        rep.add(f"scale.{key}_ratio", full[key] / empty[key], "x", f"{label}, full/empty")
    bench_dashboard.measure(rep, full_db, empty_db, 5 if s.repeat == 1 else 30)  # issue 10: pages and /metrics


def section_memory(rep: Report, s: Sizes, workers: int, tmp: Path) -> None:
    say(f"memory: resident memory after {s.mem_small:,} and {s.mem_large:,} jobs")
    q = jobq.Queue(str(tmp / "memory.db"))
    chunk = min(s.mem_small, 20_000)
    readings: dict[int, tuple[float, float]] = {}
    with jobq.Supervisor(q, concurrency=workers) as sup:
        assert sup.pid is not None
        _wait_until(lambda: q.status()["supervisors"], 60, "the supervisor to register")
        done = 0
        for mark in (s.mem_small, s.mem_large):
            while done < mark:
                n = min(chunk, mark - done)
                q.submit_many(TARGET, ((i,) for i in range(done, done + n)))
                done += n
                _wait_succeeded(q, done, 600, interval=0.02)
            kids = _children(sup.pid)
            if len(kids) != workers:
                raise RuntimeError(f"expected {workers} workers under supervisor {sup.pid}, found {kids}")
            readings[mark] = (_rss_mb(sup.pid), max(_rss_mb(k) for k in kids))
            say(f"  after {mark:,} jobs: supervisor {readings[mark][0]:.1f} MB, worker {readings[mark][1]:.1f} MB")
    for i, who in enumerate(("supervisor", "worker")):
        small, large = readings[s.mem_small][i], readings[s.mem_large][i]
        rep.add(f"memory.{who}_small_mb", small, "MB", f"{who} RSS after {s.mem_small:,} jobs")
        rep.add(f"memory.{who}_large_mb", large, "MB", f"{who} RSS after {s.mem_large:,} jobs")
        rep.add(f"memory.{who}_ratio", large / small, "x", f"{who} RSS, {s.mem_large:,}/{s.mem_small:,}")


# -- targets and output ----------------------------------------------------------------------
def evaluate_targets(rep: Report) -> None:
    f = rep.figures

    def ratio(a: str, b: str) -> float | None:
        return f[a] / f[b] if a in f and b in f else None

    checks: list[Check] = [
        ("drain >= 2x Pool.apply_async", ratio("drain.jobq", "drain.pool_apply_async"), ">=", 2.0, "x"),
        ("drain >= 0.6x bare SQLite batch", ratio("drain.jobq", "drain.sqlite_batch"), ">=", 0.6, "x"),
        ("drain >= 10x Huey", ratio("drain.jobq", "drain.huey"), ">=", 10.0, "x"),
        ("single submit >= 3x Huey", ratio("submit.jobq_single", "submit.huey_single"), ">=", 3.0, "x"),
        ("bulk submit >= 100,000 jobs/s", f.get("submit.jobq_bulk"), ">=", 100_000, " jobs/s"),
        ("latency p50 <= 2 ms", f.get("latency.p50_ms"), "<=", 2.0, " ms"),
        ("latency p99 <= 10 ms", f.get("latency.p99_ms"), "<=", 10.0, " ms"),
        ("idle supervisor < 1% of a core", f.get("latency.idle_cpu_percent"), "<", 1.0, "%"),
        ("scale: claim rate within 20%", f.get("scale.claim_ratio"), ">=", 0.8, "x"),
        ("scale: q.submit rate within 20%", f.get("scale.submit_ratio"), ">=", 0.8, "x"),
        ("scale: q.status() time within 20%", f.get("scale.status_api_ms_ratio"), "<=", 1.2, "x"),
        ("scale: `jobq status` time within 20%", f.get("scale.status_cli_ms_ratio"), "<=", 1.2, "x"),
        ("memory: supervisor within 10%", f.get("memory.supervisor_ratio"), "<=", 1.1, "x"),
        ("memory: worker within 10%", f.get("memory.worker_ratio"), "<=", 1.1, "x"),
    ]
    third_pass: list[Check] = [  # issue 15: the speed wave 2 lost, won back
        ("drain >= 2x Pool.apply_async", ratio("drain.jobq", "drain.pool_apply_async"), ">=", 2.0, "x"),
        ("drain >= 0.6x bare SQLite claim/finish loop", ratio("drain.jobq", "drain.sqlite_batch"), ">=", 0.6, "x"),
        (
            "bulk submit >= 0.5x bare executemany of jobq's rows",
            ratio("submit.jobq_bulk", "submit.sqlite_bulk_jobq_rows"),
            ">=",
            0.5,
            "x",
        ),
        ("single submit >= 3x Huey", ratio("submit.jobq_single", "submit.huey_single"), ">=", 3.0, "x"),
        ("q.map(chunksize=1000) >= 0.5x Pool.map, warm", ratio("map.warm.jobq_chunked", "map.warm.pool_map"), ">=", 0.5, "x"),
        bench_pg.single_submit_check(f),
    ]
    groups = [(5, checks), (6, bench_pg.target_checks(f)), (10, bench_dashboard.target_checks(f))]
    groups += [(11, bench_pool.target_checks(f)), (12, bench_startup.target_checks(f)), (15, third_pass)]
    judge_targets(rep, [*groups, (16, bench_steps.target_checks(f))])


def render_rows(f: dict[str, float], row: Callable[[str, str], None], lines: list[str]) -> None:
    """The SQLite rows of the table (bench_pg.render_rows adds the PostgreSQL ones)."""

    def vs(key: str, peer: str) -> str:
        return f"jobq/peer {f[key] / f[peer]:.2f}x" if key in f and peer in f and key != peer else ""

    if any(k.startswith("drain.") for k in f):
        lines.append("drain (jobs/s, from start to last result stored)")
        for k in ("drain.jobq", "drain.pool_apply_async", "drain.pool_map", "drain.sqlite_batch", "drain.huey", "drain.rq"):
            row(k, vs("drain.jobq", k))
        row("drain.jobq_cpu_us", "")
    if any(k.startswith("submit.") for k in f):
        lines.append("submit (jobs/s)")
        for k in ("submit.jobq_single", "submit.huey_single", "submit.rq_single"):
            row(k, vs("submit.jobq_single", k))
        for k in ("submit.jobq_bulk", "submit.jobq_cli_bulk", "submit.sqlite_bulk_big", "submit.sqlite_bulk_jobq_rows"):
            row(k, vs("submit.jobq_bulk", k) if k.startswith("submit.sqlite") else "")
        row("submit.sqlite_bulk", "")
    for prefix, title in (("latency.", "latency and idle cost"), ("scale.", "scale"), ("memory.", "memory")):
        keys = [k for k in f if k.startswith(prefix)]
        if keys:
            lines.append(title)
            for k in keys:
                row(k, "")


def machine(pg_url: str) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": bench_pg.server_version(pg_url),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "jobq": getattr(jobq, "__version__", "?"),
    }


def _pg_or_none(url: str) -> str | None:
    return None if bench_pg.postgres_reason(url) else url


def render_report(rep: Report, header: str) -> str:
    """The table of every figure in ``rep`` with its peers, and the targets judged."""
    rows = [
        render_rows,
        bench_pg.render_rows,
        bench_pool.render_rows,
        bench_durability.render_rows,
        bench_startup.render_rows,
        bench_steps.render_rows,
        bench_flow.render_rows,
    ]
    return render(rep, header, rows)


def against(opts: argparse.Namespace) -> int:
    """``--against REV`` (scripts/bench_against.py): every run is this script in a process of its own."""
    forward = ["--only", opts.only or bench_against.DEFAULT_ROWS, "--workers", str(opts.workers), "--postgres", opts.postgres]
    forward += ["--quick"] if opts.quick else []
    forward += ["-n", str(opts.jobs)] if opts.jobs else []
    forward += ["--scale-jobs", str(opts.scale_jobs)] if opts.scale_jobs else []
    forward += ["--step-timeout", str(opts.step_timeout)] if opts.step_timeout else []
    forward += ["--tmp", opts.tmp] if opts.tmp else []

    def render_head(rep: Report) -> str:
        evaluate_targets(rep)
        return render_report(rep, "The working tree against its peers (the same runs)")

    stop_on_sigterm()
    return bench_against.run(opts, forward, render_head)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N for every workload (well under a minute)")
    parser.add_argument("--repeat", type=int, help="runs per figure, the median is reported (default 3; 1 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for jobq and every peer (default 2)")
    parser.add_argument("-n", "--jobs", type=int, help="jobs per drain (default 5,000; 500 with --quick)")
    parser.add_argument("--scale-jobs", type=int, help="jobs in the full file of the scale test (default 1,000,000)")
    parser.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--json", dest="json_path", help="write the figures to this file")
    parser.add_argument("--tmp", help="directory for the benchmark's files (default: a new temporary directory)")
    parser.add_argument(
        "--postgres", default=bench_pg.PG_DEFAULT, help=f"PostgreSQL URL for the postgres rows (default {bench_pg.PG_DEFAULT})"
    )
    parser.add_argument("--no-peers", action="store_true", help="measure jobq's own rows only")
    parser.add_argument("--step-timeout", type=float, help="seconds a peer's run may take (default 900; 60 with --quick)")
    parser.add_argument(
        "--against",
        metavar="REV",
        help=f"run the rows (default --only {bench_against.DEFAULT_ROWS}) on REV's jobq and on the working tree's, "
        "interleaved, and print both with the ratio",
    )
    parser.add_argument("--against-timeout", type=float, default=3600, help="seconds per run with --against (default 3600)")
    opts = parser.parse_args(argv)
    if opts.against:
        return against(opts)
    sizes = QUICK if opts.quick else FULL
    if opts.repeat:
        sizes = replace(sizes, repeat=opts.repeat)
    if opts.jobs:
        sizes = replace(sizes, drain=opts.jobs)
    if opts.no_peers:
        sizes = replace(sizes, peers=False)
    if opts.scale_jobs:
        sizes = replace(sizes, scale_jobs=opts.scale_jobs)
    if opts.step_timeout:
        sizes = replace(sizes, step_seconds=opts.step_timeout)
    sections = set(opts.only.split(",")) if opts.only else set(SECTIONS)
    if sections - set(SECTIONS):
        parser.error(f"unknown section(s): {', '.join(sorted(sections - set(SECTIONS)))}")
    stop_on_sigterm()
    compile_source()
    tmp = Path(tempfile.mkdtemp(prefix="jobq-bench-", dir=opts.tmp))
    rep = Report()
    started = time.monotonic()
    info = machine(opts.postgres)
    runs: list[tuple[str, Callable[[], None]]] = [
        ("throughput", lambda: section_throughput(rep, sizes, opts.workers, tmp, sections)),
        ("latency", lambda: section_latency(rep, sizes, opts.workers, tmp)),
        ("scale", lambda: section_scale(rep, sizes, opts.workers, tmp)),
        ("memory", lambda: section_memory(rep, sizes, opts.workers, tmp)),
        ("postgres", lambda: bench_pg.section_postgres(rep, sizes, opts.workers, opts.postgres)),
        ("pool", lambda: bench_pool.section_pool(rep, sizes, opts.workers, tmp)),
        ("durability", lambda: bench_durability.section_durability(rep, sizes, opts.workers, tmp, _pg_or_none(opts.postgres))),
        ("startup", lambda: bench_startup.section_startup(rep, sizes, tmp)),
        ("steps", lambda: bench_steps.section_steps(rep, sizes, tmp)),
        ("flow", lambda: bench_flow.section_flow(rep, sizes, opts.workers, tmp)),
    ]
    try:
        for name, run in runs:
            if name not in sections and not (name == "throughput" and sections & {"drain", "submit"}):
                continue
            if name == "throughput":
                say(f"drain and submit: {sizes.drain:,} jobs, {opts.workers} workers, {sizes.repeat} run(s)")
            try:
                run()
            except Exception as exc:  # noqa: BLE001 - report it, keep the other sections' figures
                traceback.print_exc()
                rep.errors[name] = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    evaluate_targets(rep)
    elapsed = time.monotonic() - started
    header = (
        f"jobq benchmark ({'quick' if opts.quick else 'full'}): add(x) -> x + 1, {opts.workers} workers, "
        f"median of {sizes.repeat}, {elapsed:.0f}s\n"
        f"{info['cpus']} x {info['cpu_model'] or '?'}, {info['platform']}, Python {info['python']}, SQLite {info['sqlite']}, "
        f"PostgreSQL {info['postgresql'] or 'n/a'}, "
        f"load at start {info['loadavg_at_start'][0]:.2f}"
    )
    print(render_report(rep, header), flush=True)
    if opts.json_path:
        data = {
            "machine": info,
            "config": {"quick": opts.quick, "workers": opts.workers, "sizes": sizes.__dict__, "sections": sorted(sections)},
            "seconds": elapsed,
            "figures": rep.figures,
            "units": rep.units,
            "labels": rep.labels,
            "targets": rep.targets,
            "skipped": rep.skipped,
            "errors": rep.errors,
        }
        Path(opts.json_path).write_text(json.dumps(data, indent=2) + "\n")
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
