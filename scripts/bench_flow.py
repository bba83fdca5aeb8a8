"""Flow control's cost on the drain (issue 17): the same drain of no-op jobs with no limit, with a
rate that never binds (the limited claim's own cost: its turn, the bucket read and spent),
and with the jobs spread over 1, 100 and 10,000 partitions (the fair claim); each as a ratio
of the no-limit drain of the same run. Then the fairness test's figure: tenant A holds 10,000
queued jobs, tenant B submits 10 after them; how long after the supervisor starts does B's
first job start, and at which rank do B's jobs start among all starts.

    python scripts/bench.py --only flow
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench_common import FORK, TARGET, Report, Sizes, _end_process, _median_of, _run_burst_supervisor, say

import jobq

VARIANTS = ("none", "rate", "p1", "p100", "p10000")
LABELS = {
    "none": "drain, no limit",
    "rate": "drain, rate 1,000,000/s (never binds)",
    "p1": "drain, 1 partition",
    "p100": "drain, 100 partitions",
    "p10000": "drain, 10,000 partitions",
}


def _fill(db: str, n: int, variant: str) -> None:
    q = jobq.Queue(db)
    if variant == "rate":
        q.set_queue_rate("default", 1_000_000, 1.0)
    if not variant.startswith("p"):
        q.submit_many(TARGET, ((i,) for i in range(n)))
        return
    parts = int(variant[1:])
    per = -(-n // parts)
    # One transaction for all of them (a submit per partition took seconds with 10,000).
    q.submit_batch({"target": TARGET, "args": [i], "partition": f"tenant-{i // per:05d}", "check": False} for i in range(n))


def _drain(db: str, workers: int, n: int) -> float:
    q = jobq.Queue(db)
    proc = FORK.Process(target=_run_burst_supervisor, args=(db, workers), name="bench-flow-supervisor")
    t0 = time.perf_counter()
    proc.start()
    try:
        while q.status()["counts"]["succeeded"] < n:
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("drain did not finish in 600 s")
            time.sleep(0.002)
        elapsed = time.perf_counter() - t0
        proc.join(60)
    finally:
        _end_process(proc)
    return elapsed


def _fairness(db: str, workers: int, big: int) -> tuple[float, float]:
    """(seconds from the supervisor's start to the small tenant's first start, the rank of
    its last start among all starts)."""
    q = jobq.Queue(db)
    q.submit_many(TARGET, ((i,) for i in range(big)), queue="fair", partition="A")
    small = [q.submit(TARGET, (i,), queue="fair", partition="B") for i in range(10)]
    proc = FORK.Process(target=_run_burst_supervisor, args=(db, workers), name="bench-flow-fairness")
    t0 = time.time()
    proc.start()
    try:
        while any(j.state != "succeeded" for j in small):
            if time.time() - t0 > 600:
                raise RuntimeError("the small tenant's jobs did not finish in 600 s")
            time.sleep(0.005)
        starts = sorted((r.started_at or 0.0, r.partition or "") for r in q.list(queue="fair", limit=big + 10) if r.started_at)
        first_b = min(s for s, p in starts if p == "B")
        last_rank = max(i for i, (_, p) in enumerate(starts) if p == "B")
        proc.join(120)
    finally:
        _end_process(proc)
    return first_b - t0, float(last_rank + 1)


def section_flow(rep: Report, s: Sizes, workers: int, tmp: Path) -> None:
    n = min(max(s.drain, 500), 10_000) if s.repeat == 1 and s.drain < 1000 else max(1000, min(s.drain * 2, 10_000))
    say(f"flow: drains of {n:,} jobs with no limit, a rate and 1/100/10,000 partitions, {s.repeat} run(s)")
    runs: list[dict[str, float]] = []
    for r in range(s.repeat):
        fig: dict[str, float] = {}
        for variant in VARIANTS:  # interleaved: a change in load hits every variant
            db = str(tmp / f"flow-{r}-{variant}.db")
            _fill(db, n, variant)
            say(f"  run {r + 1}/{s.repeat}: {LABELS[variant]}")
            fig[variant] = n / _drain(db, workers, n)
        say(f"  run {r + 1}/{s.repeat}: fairness, 10,000 + 10")
        fig["fair_first_s"], fig["fair_rank"] = _fairness(
            str(tmp / f"flow-{r}-fair.db"), workers, 10_000 if n >= 10_000 else 2_000
        )
        runs.append(fig)
    f = _median_of(runs)
    for variant in VARIANTS:
        rep.add(f"flow.{variant}", f[variant], "jobs/s", LABELS[variant])
    for variant in VARIANTS[1:]:
        rep.figures[f"flow.{variant}_ratio"] = f[variant] / f["none"]  # shown beside its row
    big = "10,000" if n >= 10_000 else "500"
    rep.add("flow.fair_first_s", f["fair_first_s"] * 1000, "ms", f"fairness: B's first start after start-up (A {big} ahead)")
    rep.add("flow.fair_rank", f["fair_rank"], "", "fairness: rank of B's last start among all starts")


def target_checks(f: dict[str, float]) -> list[tuple[str, float | None, str, float, str]]:
    return [("flow: drain with 100 partitions within 10%", f.get("flow.p100_ratio"), ">=", 0.9, "x")]


def render_rows(f: dict[str, float], row: Callable[[str, str], None], lines: list[str]) -> None:
    if "flow.none" not in f:
        return
    lines.append("flow control (issue 17): drain of no-op jobs, same run")
    for variant in VARIANTS:
        ratio = f.get(f"flow.{variant}_ratio")
        row(f"flow.{variant}", f"{ratio:.2f}x no limit" if ratio is not None else "")
    row("flow.fair_first_s", "")
    row("flow.fair_rank", "")
    lines.append("targets (issue 17)")
    for name, value, _, bound, _ in target_checks(f):
        if value is not None:
            lines.append(f"  [{'PASS' if value >= bound else 'MISS'}] {name}: {value:.2f}x")
