"""CLI start-up (issue 12): the wall time of ``jobq --version``, ``jobq status`` and
``jobq submit`` beside ``python -c pass`` and RQ's CLI (``rq info`` against Redis on
127.0.0.1:6379, else ``rq --help``), in the same run, the commands interleaved so that a
change in the machine's load hits every one. Target: ``jobq status`` under 4x ``python -c pass``.

    python scripts/bench_startup.py            # alone: prints the figures
    python scripts/bench.py --only startup     # as a section of the benchmark
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import SCRIPTS, TARGET, Check, Report, Sizes, say  # noqa: E402
from bench_common import SOURCE as REPO  # noqa: E402 - the measured checkout

import jobq  # noqa: E402

LABELS = {
    "startup.python_ms": "python -c pass",
    "startup.jobq_version_ms": "jobq --version",
    "startup.jobq_status_ms": "jobq status",
    "startup.jobq_submit_ms": "jobq submit (one job)",
    "startup.rq_ms": "RQ CLI",
    "startup.status_ratio": "jobq status / python -c pass",
}


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    # As installed: bytecode cached (pip compiles it at install). An environment that forbids
    # writing it (PYTHONDONTWRITEBYTECODE) would time the compiler instead; the cache goes to
    # the benchmark's own folder, not the checkout.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for key in [k for k in env if k.startswith("JOBQ_")]:
        env.pop(key)  # the defaults: no configuration to validate
    return env


def _rq_command() -> tuple[list[str] | None, str]:
    """RQ's CLI: ``rq info`` when Redis answers, else ``rq --help``; (None, why) without rq."""
    exe = shutil.which("rq", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if exe is None:
        return None, "rq is not installed (pip install -e '.[bench]')"
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1, socket_timeout=2).ping()
    except Exception:  # noqa: BLE001 - no redis package or no server: the help screen still starts the CLI
        return [exe, "--help"], "rq --help"
    return [exe, "info", "--url", "redis://127.0.0.1:6379/0"], "rq info"


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return elapsed * 1000


def section_startup(rep: Report, s: Sizes, tmp: Path) -> None:
    """Median start-up of each command over ``runs`` interleaved rounds."""
    runs = 5 if s.repeat == 1 else 21
    db = str(tmp / "startup.db")
    q = jobq.Queue(db)
    q.submit_many(TARGET, [(i,) for i in range(100)])
    env = _env(tmp)
    py = [sys.executable]
    commands: dict[str, list[str]] = {
        "startup.python_ms": [*py, "-c", "pass"],
        "startup.jobq_version_ms": [*py, "-m", "jobq", "--version"],
        "startup.jobq_status_ms": [*py, "-m", "jobq", "--db", db, "status"],
        "startup.jobq_submit_ms": [*py, "-m", "jobq", "--db", db, "submit", TARGET, "1"],
    }
    rq_cmd, rq_what = _rq_command()
    if rq_cmd is None:
        rep.skipped["rq_cli"] = rq_what
    else:
        commands["startup.rq_ms"] = rq_cmd
        LABELS["startup.rq_ms"] = f"RQ CLI ({rq_what})"
    for cmd in commands.values():  # warm the OS caches: the first run of each is not counted
        _timed(cmd, env)
    samples: dict[str, list[float]] = {key: [] for key in commands}
    say(f"  start-up: {len(commands)} commands x {runs} rounds")
    for _ in range(runs):
        for key, cmd in commands.items():
            samples[key].append(_timed(cmd, env))
    for key, values in samples.items():
        rep.add(key, statistics.median(values), "ms", LABELS[key])
    rep.add(
        "startup.status_ratio",
        rep.figures["startup.jobq_status_ms"] / rep.figures["startup.python_ms"],
        "x",
        LABELS["startup.status_ratio"],
    )


def target_checks(f: dict[str, float]) -> list[Check]:
    return [("start-up: jobq status < 4x python -c pass", f.get("startup.status_ratio"), "<", 4.0, "x")]


def render_rows(f: dict[str, float], row: Callable[[str, str], None], lines: list[str]) -> None:
    if not any(k.startswith("startup.") for k in f):
        return
    lines.append("CLI start-up (ms, median)")
    base = f.get("startup.python_ms")
    keys = ("python", "jobq_version", "jobq_status", "jobq_submit", "rq")
    for key in (f"startup.{k}_ms" for k in keys):
        extra = f"{f[key] / base:.2f}x python" if key in f and base and key != "startup.python_ms" else ""
        if key == "startup.rq_ms" and "startup.jobq_status_ms" in f and key in f:
            extra += f", jobq status/RQ {f['startup.jobq_status_ms'] / f[key]:.2f}x"
        row(key, extra)


def main() -> int:
    from bench_common import FULL, QUICK

    rep = Report()
    tmp = Path(tempfile.mkdtemp(prefix="jobq-bench-startup-"))
    try:
        section_startup(rep, QUICK if "--quick" in sys.argv else FULL, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key, value in rep.figures.items():
        print(f"{rep.labels[key]:<40} {value:8.2f} {rep.units[key]}")
    for name, value, _, bound, _ in target_checks(rep.figures):
        print(f"{name}: {value:.2f} (bound {bound})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
