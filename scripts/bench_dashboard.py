"""Dashboard figures of the benchmark (issue 10): the server time of the overview, the first
page of jobs, a filtered page (failed jobs) and a ``/metrics`` scrape, on the million-job file
and on an empty file (each given the same 200 jobs first, so every page has rows in both),
each read from the ``Server-Timing`` header of a real `jobq dashboard` (uvicorn) over loopback.
Called by scripts/bench.py's scale section; also runs alone:

    python scripts/bench_dashboard.py FULL.db EMPTY.db [--requests N]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# The checkout whose jobq is measured (bench_common.SOURCE: ``$JOBQ_BENCH_SOURCE`` or this one).
REPO = Path(os.environ.get("JOBQ_BENCH_SOURCE") or Path(__file__).resolve().parent.parent).resolve()
PAGES = {
    "overview": ("/", "overview"),
    "jobs": ("/jobs", "jobs, 1st page"),
    "failed": ("/jobs?state=failed", "jobs, failed"),
    "metrics": ("/metrics", "/metrics"),
}
TARGET_MS = 100.0
TARGET_RATIO = 1.2


class Dashboard:
    """``python -m jobq --db DB dashboard --port 0 --read-only`` until :meth:`stop`."""

    def __init__(self, db: str) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobq", "--db", db, "dashboard", "--port", "0", "--read-only"],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            m = re.search(r"jobq dashboard: (http://\S+)", Path(self.log.name).read_text())
            if m:
                self.url = m.group(1).rstrip("/")
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the dashboard did not start: {Path(self.log.name).read_text()}")
            time.sleep(0.05)

    def server_ms(self, path: str) -> float:
        """The server's own time for one request of ``path`` (Server-Timing), in ms."""
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            r.read()
            timing = r.headers.get("server-timing", "")
        m = re.search(r"dur=([0-9.]+)", timing)
        if r.status != 200 or not m:
            raise RuntimeError(f"{path}: status {r.status}, server-timing {timing!r}")
        return float(m.group(1))

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.log.close()
        os.unlink(self.log.name)


def _seed(db: str, n: int = 200) -> None:
    """The same few jobs run in both files (a quarter failing), so each page has rows to show
    in both and the comparison is of the database, not of an empty page."""
    import jobq

    q = jobq.Queue(db)
    q.submit_many("jobq.examples:add", [(i, 1) if i % 4 else ("x", 1) for i in range(n)], queue="bench-dash")
    jobq.Supervisor(q, concurrency=2, burst=True, queues=["bench-dash"]).run()


def measure(rep: Any, full_db: str, empty_db: str, requests: int = 30) -> None:
    """Add ``scale.dash_<page>_ms_{empty,full,ratio}`` figures to the benchmark report ``rep``
    (medians of ``requests`` requests each, after a few to warm up, interleaved by round)."""
    sys.path.insert(0, str(REPO))
    from jobq.dashboard import INSTALL_LINE, missing

    if missing():
        print(f"dashboard rows skipped: the dashboard needs {', '.join(missing())}: {INSTALL_LINE}", flush=True)
        return
    for db in (empty_db, full_db):
        _seed(db)
    servers = {"empty": Dashboard(empty_db), "full": Dashboard(full_db)}
    try:
        times: dict[tuple[str, str], list[float]] = {(w, p): [] for w in servers for p in PAGES}
        for _ in range(3):
            for server in servers.values():
                for path, _label in PAGES.values():
                    server.server_ms(path)
        for _ in range(requests):
            for which, server in servers.items():
                for page, (path, _label) in PAGES.items():
                    times[(which, page)].append(server.server_ms(path))
    finally:
        for server in servers.values():
            server.stop()
    for page, (_path, label) in PAGES.items():
        empty = statistics.median(times[("empty", page)])
        full = statistics.median(times[("full", page)])
        rep.add(f"scale.dash_{page}_ms_empty", empty, "ms", f"dashboard {label} (server), empty file")
        rep.add(f"scale.dash_{page}_ms_full", full, "ms", f"dashboard {label} (server), full file")
        rep.add(f"scale.dash_{page}_ms_ratio", full / empty, "x", f"dashboard {label}, full/empty")


def target_checks(f: dict[str, float]) -> list[tuple[str, float | None, str, float, str]]:
    """Issue 10's targets: each page under 100 ms on the full file, and within 20% of the empty one."""
    checks: list[tuple[str, float | None, str, float, str]] = []
    for page, (_path, label) in PAGES.items():
        checks.append((f"dashboard {label} < {TARGET_MS:g} ms", f.get(f"scale.dash_{page}_ms_full"), "<", TARGET_MS, " ms"))
        checks.append((f"dashboard {label} within 20%", f.get(f"scale.dash_{page}_ms_ratio"), "<=", TARGET_RATIO, "x"))
    return checks


class _Report:
    def __init__(self) -> None:
        self.figures: dict[str, float] = {}

    def add(self, key: str, value: float, unit: str, label: str) -> None:
        self.figures[key] = value
        print(f"  {label:<62} {value:10.2f} {unit}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full_db")
    parser.add_argument("empty_db")
    parser.add_argument("--requests", type=int, default=30)
    opts = parser.parse_args(argv)
    rep = _Report()
    measure(rep, opts.full_db, opts.empty_db, opts.requests)
    failed = 0
    for name, value, op, limit, unit in target_checks(rep.figures):
        ok = value is not None and (value < limit if op == "<" else value <= limit)
        failed += not ok
        print(f"  [{'PASS' if ok else 'MISS'}] {name}: {value:.2f}{unit}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
