"""Durable steps (issue 16): what a step costs, against the same job without steps and
against DBOS Transact on SQLite, in the same run.

- jobq: a job of 1,000 no-op steps (``jobq.step.run``), timed inside the worker by the job
  itself, and the same job without steps; then a 10-step job submitted
  and joined end to end (supervisor already up), the median of ``runs``.
- jobq again with ``durability = "full"`` (every commit synced, SQLite ``synchronous=FULL``).
- DBOS (the ``bench`` extra): the same two workflows with ``@DBOS.step`` on SQLite, in a
  child process (scripts/bench_steps_dbos.py).

    python scripts/bench.py --only steps
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bench_common as common
from bench_common import Check, Report, Sizes, say
from bench_durability import durability

import jobq

SHORT = 10


def _job_seconds(q: jobq.Queue, target: str, n: int) -> float:
    """The seconds the job's body took, as the job measured it in its worker."""
    return float(q.submit(target, (n,)).join(timeout=600))


def _jobq(tmp: Path, tag: str, runs: int, long: int) -> tuple[float, float, list[float]]:
    """(seconds of the ``long``-step job, of the job without steps, of each 10-step job end to end)."""
    q = jobq.Queue(str(tmp / f"steps-{tag}.db"))
    with jobq.Supervisor(q, concurrency=1):
        _job_seconds(q, "bench_tasks:steps_job", SHORT)  # warm: imports, schema, connections
        long_run = _job_seconds(q, "bench_tasks:steps_job", long)
        plain = _job_seconds(q, "bench_tasks:plain_job", long)
        short = []
        for _ in range(runs):
            t0 = time.perf_counter()
            q.submit("bench_tasks:steps_job", (SHORT,)).join(timeout=60)
            short.append(time.perf_counter() - t0)
    return long_run, plain, short


def _dbos(tmp: Path, tag: str, runs: int, long: int, limit: float) -> tuple[float, list[float]] | str:
    """DBOS's (seconds of the ``long``-step workflow, of each 10-step one), or why it is skipped;
    its process (and its group) is ended after ``limit`` seconds."""
    try:
        import dbos  # noqa: F401
    except ImportError:
        return "dbos is not installed (pip install -e '.[bench]')"
    args = [str(common.SCRIPTS / "bench_steps_dbos.py"), str(tmp / f"dbos-{tag}.sqlite"), str(long), str(runs)]
    pipe = subprocess.PIPE
    proc = subprocess.Popen([sys.executable, *args], stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except BaseException as exc:  # out of time, or the benchmark is stopping
        with common.shielded():
            common._signal(proc.pid, signal.SIGKILL, group=True)  # not waited for yet: its pid is its own
            proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise TimeoutError(f"timed out after {limit:g} s") from None
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"DBOS run failed: {stderr.strip()[-500:]}")
    data = json.loads(stdout.strip().splitlines()[-1])
    return float(data["long"]), [float(x) for x in data["short"]]


def section_steps(rep: Report, s: Sizes, tmp: Path) -> None:
    quick = s.drain <= common.QUICK.drain
    runs, n_steps = (5, 100) if quick else (20, 1000)
    per_step: dict[str, list[float]] = {}
    for r in range(s.repeat):
        say(f"  run {r + 1}/{s.repeat}: jobq, {n_steps} steps and {runs} x {SHORT} steps")
        long_run, plain, short = _jobq(tmp, str(r), runs, n_steps)
        per_step.setdefault("jobq_long", []).append(long_run / n_steps)
        per_step.setdefault("jobq_plain", []).append(plain)
        per_step.setdefault("jobq_short", []).append(statistics.median(short) / SHORT)
        with durability("full"):  # every step's commit synced to disk, as DBOS's SQLite commits may be
            per_step.setdefault("jobq_full", []).append(_jobq(tmp, f"{r}-full", 1, n_steps)[0] / n_steps)
        say(f"  run {r + 1}/{s.repeat}: DBOS on SQLite, the same workflows")
        try:
            got = _dbos(tmp, str(r), runs, n_steps, s.step_seconds)
        except Exception as exc:  # noqa: BLE001 - a broken or hung peer is reported, jobq's rows still are
            rep.errors["steps.dbos"] = f"{type(exc).__name__}: {exc}"
            say(f"  DBOS FAILED: {rep.errors['steps.dbos']}")
            continue
        if isinstance(got, str):
            rep.skipped["steps.dbos"] = got
            continue
        per_step.setdefault("dbos_long", []).append(got[0] / n_steps)
        per_step.setdefault("dbos_short", []).append(statistics.median(got[1]) / SHORT)
    us = {k: statistics.median(v) * 1e6 for k, v in per_step.items()}
    rep.add("steps.jobq_per_step_us", us["jobq_long"], "us", f"jobq: a job of {n_steps:,} no-op steps, per step")
    rep.add("steps.jobq_plain_job_ms", us["jobq_plain"] / 1000, "ms", "jobq: the same job without steps (whole job)")
    rep.add(
        "steps.jobq_vs_plain",
        us["jobq_long"] * n_steps / max(us["jobq_plain"], 1e-3),
        "x",
        f"jobq: {n_steps:,}-step job / the same job without steps",
    )
    rep.add("steps.jobq_full_per_step_us", us["jobq_full"], "us", f"jobq, durability=full: {n_steps:,} steps, per step")
    rep.add("steps.jobq_short_per_step_us", us["jobq_short"], "us", f"jobq: a {SHORT}-step job end to end, per step")
    if "dbos_long" in us:
        rep.add("steps.dbos_per_step_us", us["dbos_long"], "us", f"DBOS (SQLite): a {n_steps:,}-step workflow, per step")
        rep.add("steps.dbos_short_per_step_us", us["dbos_short"], "us", f"DBOS (SQLite): a {SHORT}-step workflow, per step")
        rep.add("steps.jobq_vs_dbos", us["jobq_long"] / us["dbos_long"], "x", f"per step, {n_steps:,} steps: jobq / DBOS")
        rep.add("steps.jobq_full_vs_dbos", us["jobq_full"] / us["dbos_long"], "x", "per step, durability=full: jobq / DBOS")
        rep.add("steps.jobq_vs_dbos_short", us["jobq_short"] / us["dbos_short"], "x", f"per step, {SHORT} steps: jobq / DBOS")


def target_checks(f: dict[str, float]) -> list[Check]:
    return [
        ("durable step: jobq per step <= DBOS per step (1,000-step job)", f.get("steps.jobq_vs_dbos"), "<=", 1.0, "x"),
        ("durable step: jobq per step <= DBOS per step (10-step workflow)", f.get("steps.jobq_vs_dbos_short"), "<=", 1.0, "x"),
    ]


def render_rows(f: dict[str, float], row: Callable[[str, str], None], lines: list[str]) -> None:
    keys = [k for k in f if k.startswith("steps.")]
    if keys:
        lines.append("durable steps (SQLite): time per step, against no steps and DBOS")
        for key in (
            "steps.jobq_per_step_us",
            "steps.jobq_plain_job_ms",
            "steps.jobq_vs_plain",
            "steps.dbos_per_step_us",
            "steps.jobq_vs_dbos",
            "steps.jobq_full_per_step_us",
            "steps.jobq_full_vs_dbos",
            "steps.jobq_short_per_step_us",
            "steps.dbos_short_per_step_us",
            "steps.jobq_vs_dbos_short",
        ):
            row(key, "")
