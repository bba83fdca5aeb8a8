"""What scripts/bench.py, bench_peers.py and bench_pg.py share: sizes, the report and its table,
medians and percentiles, starting and ending processes (SIGTERM unwinds, cleanups are shielded),
CPU and memory readings from /proc, and the jobq supervisor and latency runs both stores use.

Importing it puts scripts/ (``bench_tasks``) and the checkout whose jobq is measured on
``sys.path``: this one, or the one named by ``$JOBQ_BENCH_SOURCE`` (``bench.py --against REV``
runs today's benchmark code on REV's jobq that way).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
# The checkout whose jobq is measured (its CLI runs from there too): this one by default.
SOURCE = Path(os.environ.get("JOBQ_BENCH_SOURCE") or REPO).resolve()
for _p in (str(SOURCE), str(SCRIPTS)):  # bench_tasks, and jobq from the measured checkout
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)

import jobq  # noqa: E402

# Imported once here, before any drain forks its supervisor: a drain's figure measures draining,
# not the import of the runtime in each forked supervisor (``import jobq`` loads it lazily since
# 1cd2803; 47f5756 loaded it eagerly). The ``startup`` section measures a start with imports.
_RUNTIME_LOADED = jobq.Supervisor


def compile_source() -> None:
    """Write the bytecode of the measured checkout's ``jobq`` (as ``pip install`` does), so that
    every CLI run the benchmark starts loads it instead of compiling each module again: with
    ``PYTHONDONTWRITEBYTECODE`` set, or in a fresh worktree of ``--against``, none is there."""
    import compileall

    compileall.compile_dir(str(SOURCE / "jobq"), quiet=1)


TARGET = "bench_tasks:add"
FORK = multiprocessing.get_context("fork")
INSTALL_HINT = "not installed (pip install -e '.[bench]')"


@dataclass(frozen=True)
class Sizes:
    drain: int  # jobs drained by jobq, Pool, bare SQLite, Huey
    rq: int  # RQ forks a process per job: a small N
    single: int  # one-by-one submits (jobq and Huey)
    bulk: int  # bulk submits (jobq submit_many, the CLI, bare SQLite executemany)
    latency: int  # submit + join round trips
    idle_seconds: float  # how long the idle supervisor's CPU use is sampled
    scale_jobs: int  # jobs in the "full" file
    scale_claim: int  # new jobs drained in the empty and the full file
    scale_submit: int  # q.submit calls in the empty and the full file
    status_calls: int  # q.status() calls timed (median)
    status_cli_runs: int  # `jobq status` runs timed (median)
    mem_small: int
    mem_large: int
    repeat: int
    pg_peer: int  # jobs drained by procrastinate and Celery (bench_pg.py)
    map_items: int  # items of a map (bench_pool.py)
    peers: bool = True  # False: jobq's own rows only (the REV side of ``--against``)
    step_seconds: float = 900.0  # time limit of each step (a peer's run): bench_limit.py


FULL = Sizes(20_000, 200, 5000, 20000, 500, 3.0, 1_000_000, 2000, 1000, 200, 3, 10_000, 200_000, 3, 5000, 200_000)
QUICK = Sizes(500, 20, 300, 2000, 50, 1.0, 20_000, 500, 200, 50, 1, 1000, 5000, 1, 200, 5000, step_seconds=60.0)


# -- reporting -------------------------------------------------------------------------------
class Report:
    def __init__(self) -> None:
        self.figures: dict[str, float] = {}
        self.units: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.targets: list[dict[str, Any]] = []

    def add(self, key: str, value: float, unit: str, label: str) -> None:
        self.figures[key] = value
        self.units[key] = unit
        self.labels[key] = label


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in runs for k in r}
    return {k: statistics.median([r[k] for r in runs if k in r]) for k in sorted(keys)}


def _percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def redis_unreachable() -> str | None:
    """Why Redis on 127.0.0.1:6379 cannot be used (None: it answers); the redis package must be there."""
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1, socket_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable Redis here
        return f"no Redis answering on 127.0.0.1:6379 ({type(exc).__name__})"
    return None


# -- processes and /proc ---------------------------------------------------------------------
def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            try:
                os.killpg(pid, sig)
                return
            except ProcessLookupError:
                pass  # not yet its own group leader, or the group is gone
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# SIGTERM stops the benchmark by unwinding (SystemExit), so that every `finally` ends its
# processes and drops its files, schemas and databases; cleanups run shielded from it.
_STOP: dict[str, int] = {"pid": 0, "shield": 0, "pending": 0}


def _on_sigterm(signum: int, frame: Any) -> None:
    if os.getpid() != _STOP["pid"]:  # a forked child that kept this handler: die as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    say("SIGTERM: stopping; it was here:")
    traceback.print_stack(frame, file=sys.stderr)
    if _STOP["shield"]:
        _STOP["pending"] = signum  # raised when the cleanup under way is done
        return
    raise SystemExit(128 + signum)


def stop_on_sigterm() -> None:
    """From now on a SIGTERM to this process unwinds it (see ``_on_sigterm``)."""
    _STOP["pid"] = os.getpid()
    signal.signal(signal.SIGTERM, _on_sigterm)


@contextmanager
def shielded() -> Iterator[None]:
    """A cleanup that a SIGTERM must not cut short: the signal takes effect once it is done."""
    _STOP["shield"] += 1
    try:
        yield
    finally:
        _STOP["shield"] -= 1
        if not _STOP["shield"] and _STOP["pending"]:
            signum, _STOP["pending"] = _STOP["pending"], 0
            raise SystemExit(128 + signum)


def _end_process(proc: Any, group: bool = False) -> None:
    """Stop a process this script started (by its pid, or its own process group)."""
    if proc.pid is None:
        return
    with shielded():
        if proc.is_alive():
            _signal(proc.pid, signal.SIGTERM, group)
            proc.join(30)
        if proc.is_alive():
            _signal(proc.pid, signal.SIGKILL, group)
        elif group:  # its workers, should any have outlived it
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.join(10)


def _children(pid: int) -> list[int]:
    """The worker processes of a supervisor (its children but its checkpointer)."""
    return [k for k in _all_children(pid) if _comm(k) != "jobq-checkpoint"]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _all_children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        return out
    except OSError:
        pass
    for entry in os.listdir("/proc"):  # no /proc/.../children: scan the parents
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _cpu_percent(pids: list[int], seconds: float) -> float:
    hz = os.sysconf("SC_CLK_TCK")
    before = {p: _cpu_ticks(p) for p in pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    used = sum(max(0, _cpu_ticks(p) - before[p]) for p in pids)
    return 100.0 * used / hz / (time.monotonic() - t0)


def _wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)
    return value


# -- jobq, on either store -------------------------------------------------------------------
def _run_burst_supervisor(db: str, workers: int) -> None:
    jobq.Supervisor(jobq.Queue(db), concurrency=workers, burst=True).run()


def measure_latency(rep: Report, q: jobq.Queue, s: Sizes, workers: int, prefix: str, who: str) -> None:
    """Submit + join round trips through a supervisor, then its idle CPU (workers included):
    reported as ``{prefix}latency.p50_ms``, ``...p99_ms`` and ``...idle_cpu_percent``."""
    sup = jobq.Supervisor(q, concurrency=workers)
    with sup:
        _wait_until(lambda: q.status()["supervisors"], 60, "the supervisor to register")
        for i in range(10):  # warm up: workers started, target imported
            q.submit(TARGET, (i,)).join(timeout=60)
        samples = []
        for i in range(s.latency):
            t0 = time.perf_counter()
            q.submit(TARGET, (i,)).join(timeout=60)
            samples.append((time.perf_counter() - t0) * 1000)
        time.sleep(1.0)  # let the supervisor fall back to its idle pace before sampling
        assert sup.pid is not None
        pids = [sup.pid, *_children(sup.pid)]
        cpu = _cpu_percent(pids, s.idle_seconds)
    samples.sort()
    rep.add(f"{prefix}latency.p50_ms", _percentile(samples, 50), "ms", f"{who}submit + join, p50")
    rep.add(f"{prefix}latency.p99_ms", _percentile(samples, 99), "ms", f"{who}submit + join, p99")
    rep.add(f"{prefix}latency.idle_cpu_percent", cpu, "% of a core", f"{who}idle supervisor + {len(pids) - 1} workers, CPU")


# -- targets and table -----------------------------------------------------------------------
Check = tuple[str, float | None, str, float, str]  # name, value (None: not measured), op, bound, unit


def judge_targets(rep: Report, groups: list[tuple[int, list[Check]]]) -> None:
    """Each check of each issue's group, PASS, MISS or n/a, into ``rep.targets``."""
    for issue, group in groups:
        for name, value, op, target, unit in group:
            if value is None:
                rep.targets.append({"target": name, "issue": issue, "value": None, "result": "n/a"})
                continue
            ok = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
            result = "PASS" if ok else "MISS"
            rep.targets.append(
                {"target": name, "issue": issue, "value": value, "bound": target, "op": op, "unit": unit, "result": result}
            )


def _fmt(value: float, unit: str) -> str:
    if unit == "jobs/s" or unit == "jobs":
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.2f}"


RowsFn = Callable[[dict[str, float], Callable[[str, str], None], list[str]], None]


def render(rep: Report, header: str, sections: list[RowsFn]) -> str:
    """The table: each of ``sections`` appends its rows (``row(key, extra)``) and titles to the
    lines, then the skipped peers, the errors and the targets of issues 5 and 6."""
    f, lines = rep.figures, [header, ""]

    def row(key: str, extra: str = "") -> None:
        if key in f:
            unit = "" if rep.units[key] == "x" else rep.units[key]
            lines.append(f"  {rep.labels[key]:<52} {_fmt(f[key], rep.units[key]):>12} {unit:<12} {extra}".rstrip())

    for rows in sections:
        rows(f, row, lines)
    for peer, reason in rep.skipped.items():
        lines.append(f"  {peer}: skipped: {reason}")
    for key, error in rep.errors.items():
        lines.append(f"  {key}: ERROR: {error}")
    titles = ((5, "targets (issue 5)"), (6, "targets (issue 6, PostgreSQL)"), (10, "targets (issue 10, dashboard)"))
    for issue, title in (*titles, (12, "targets (issue 12)"), (15, "targets (issue 15)")):
        targets = [t for t in rep.targets if t["issue"] == issue]
        if all(t["value"] is None for t in targets):
            continue  # nothing of this issue measured in this run
        lines.append(title)
        for t in targets:
            if t["value"] is None:
                lines.append(f"  [n/a ] {t['target']}: not measured")
                continue
            value, bound = t["value"], t["bound"]
            shown = f"{value:,.0f}{t['unit']}" if t["unit"] == " jobs/s" else f"{value:.2f}{t['unit']}"
            note = ""
            if t["result"] == "MISS":
                note = f" ({value / bound:.0%} of the target)" if t["op"] == ">=" else f" ({value / bound:.1f}x the bound)"
            lines.append(f"  [{t['result']}] {t['target']}: {shown}{note}")
    return "\n".join(lines)
