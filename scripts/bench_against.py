"""``scripts/bench.py --against REV``: today's benchmark code run on REV's jobq and on the working
tree's, interleaved in one run (REV, HEAD, REV, HEAD, ...), each figure printed for both with the
ratio.

REV is checked out in a temporary ``git worktree`` (detached); each run is one ``bench.py
--repeat 1 --json`` process whose ``$JOBQ_BENCH_SOURCE`` and ``PYTHONPATH`` point at the checkout
under test, so it imports that checkout's ``jobq`` (with the packages of this environment) while
the benchmark code is the working tree's. The REV runs measure jobq alone (``--no-peers``); the
HEAD runs measure the peers too, so the usual table of HEAD against its peers comes from the
same runs. The worktree is removed at the end, on an error or a SIGTERM too.

    python scripts/bench.py --against 47f5756 --only drain,submit,latency,pool --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_common import REPO, SCRIPTS, Report, say, shielded

DEFAULT_ROWS = "drain,submit,latency,pool"
LOWER_IS_BETTER = {"ms", "s", "us", "MB", "% of a core"}
ORDER = ("drain.", "submit.", "latency.", "map.cold.", "map.warm.", "pg.", "durability.")


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _describe_tree() -> str:
    head = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{head}{' + uncommitted changes' if dirty else ''}"


class Checkout:
    """REV in a temporary detached worktree, removed by :meth:`remove`."""

    def __init__(self, rev: str, parent: Path) -> None:
        self.sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
        self.title = f"{rev} ({self.sha[:7]}: {_git('log', '-1', '--format=%s', self.sha)[:60]})"
        self.path = parent / f"rev-{self.sha[:12]}"
        _git("worktree", "add", "--detach", "--quiet", str(self.path), self.sha)

    def remove(self) -> None:
        with shielded():
            try:
                _git("worktree", "remove", "--force", "--force", str(self.path))  # twice: even while locked
            except subprocess.CalledProcessError:
                shutil.rmtree(self.path, ignore_errors=True)
                _git("worktree", "prune")


def _env(source: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["JOBQ_BENCH_SOURCE"] = str(source)
    env["PYTHONPATH"] = os.pathsep.join([str(source), str(SCRIPTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("JOBQ_CONFIG", None)
    return env


def _check_import(source: Path) -> Path:
    """Where a run under ``source`` imports jobq from, which must be that checkout."""
    out = subprocess.run(
        [sys.executable, "-c", "import jobq; print(jobq.__file__)"],
        cwd=source,
        env=_env(source),
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = Path(out.stdout.strip() or "?").resolve()
    if out.returncode != 0 or source.resolve() not in found.parents:
        raise RuntimeError(f"a run under {source} imports jobq from {found}: {out.stderr.strip()[-500:]}")
    return found.parent


def _run_once(source: Path, args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """One ``bench.py --repeat 1`` process on ``source``'s jobq; its JSON (figures and errors)."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "bench.py"), *args, "--repeat", "1", "--json", str(out)],
        cwd=source,
        env=_env(source),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        with shielded():
            if proc.poll() is None:  # SIGTERM first: it ends its own workers and drops its files
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    if not out.exists():
        raise RuntimeError(f"bench.py on {source} exited {proc.returncode} without figures:\n{stdout[-2000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return data


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit in ("jobs/s", "jobs") else f"{value:,.2f} {unit}"


def _spread(values: list[float], unit: str) -> str:
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    return f"{lo:,.0f}-{hi:,.0f}" if unit == "jobs/s" else f"{lo:,.2f}-{hi:,.2f}"


def compare(rev_runs: list[dict[str, Any]], head_runs: list[dict[str, Any]], rev_title: str, head_title: str) -> str:
    """The table: each of REV's figures beside HEAD's (medians; the range of the runs), and the
    ratio as a speed (HEAD/REV for rates, REV/HEAD for times: above 1, HEAD is better)."""
    units: dict[str, str] = {}
    labels: dict[str, str] = {}
    for run in (*rev_runs, *head_runs):
        units.update(run["units"])
        labels.update(run["labels"])
    # REV's runs measure jobq alone: its keys are the figures to compare (HEAD's add the peers').
    keys = sorted(
        (k for k in {k for run in rev_runs for k in run["figures"]} if units[k] not in ("x", "jobs")),
        key=lambda k: (next((i for i, p in enumerate(ORDER) if k.startswith(p)), len(ORDER)), k),
    )
    lines = [
        f"REV  = {rev_title}",
        f"HEAD = the working tree, {head_title}",
        f"{len(rev_runs)} run(s) each, interleaved REV, HEAD, ...; medians (range of the runs); "
        "speed = HEAD/REV for rates, REV/HEAD for times (above 1: HEAD is better)",
        "",
        f"  {'figure':<52} {'REV':>16} {'HEAD':>16}  {'speed':>7}",
    ]
    for key in keys:
        unit = units[key]
        rev = [run["figures"][key] for run in rev_runs if key in run["figures"]]
        head = [run["figures"][key] for run in head_runs if key in run["figures"]]
        r = statistics.median(rev) if rev else None
        h = statistics.median(head) if head else None
        speed = ""
        if r and h:
            speed = f"{(r / h if unit in LOWER_IS_BETTER else h / r):.2f}x"
        lines.append(
            f"  {labels.get(key, key):<52} {_fmt(r, unit) if r is not None else 'n/a':>16} "
            f"{_fmt(h, unit) if h is not None else 'n/a':>16}  {speed:>7}"
        )
        spread = (_spread(rev, unit), _spread(head, unit))
        if any(spread):
            lines.append(f"  {'':<52} {spread[0]:>16} {spread[1]:>16}")
    for side, runs in (("REV", rev_runs), ("HEAD", head_runs)):
        errors = {k: v for run in runs for k, v in run.get("errors", {}).items()}
        for key, error in errors.items():
            lines.append(f"  {side}: {key}: ERROR: {error}")
    return "\n".join(lines)


def head_report(head_runs: list[dict[str, Any]]) -> Report:
    """HEAD's figures (medians of its runs) as a benchmark report, for the usual table of HEAD
    against the peers measured in the same runs."""
    rep = Report()
    for run in head_runs:
        rep.units.update(run["units"])
        rep.labels.update(run["labels"])
        rep.skipped.update(run.get("skipped", {}))
    for key in sorted({k for run in head_runs for k in run["figures"]}):
        rep.figures[key] = statistics.median(run["figures"][key] for run in head_runs if key in run["figures"])
    return rep


def run(opts: argparse.Namespace, forward: list[str], render_head: Callable[[Report], str]) -> int:
    """``bench.py --against REV``: ``forward`` are the options every run gets (rows, sizes,
    workers); ``render_head`` prints HEAD's table against its peers."""
    repeat = opts.repeat or (1 if opts.quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="jobq-against-", dir=opts.tmp))
    started = time.monotonic()
    checkout: Checkout | None = None
    rev_runs: list[dict[str, Any]] = []
    head_runs: list[dict[str, Any]] = []
    try:
        with shielded():  # a SIGTERM while git makes the worktree takes effect once it is ours to remove
            checkout = Checkout(opts.against, tmp)
        head_title = _describe_tree()
        imports = _check_import(checkout.path), _check_import(REPO)
        say(f"against: REV {checkout.title} in {checkout.path}; HEAD {head_title}; {repeat} run(s) each")
        peers = [] if opts.no_peers else None
        for r in range(repeat):
            for side, source, runs, extra in (
                ("REV", checkout.path, rev_runs, ["--no-peers"]),
                ("HEAD", REPO, head_runs, ["--no-peers"] if peers is not None else []),
            ):
                say(f"against: run {r + 1}/{repeat}: {side}")
                runs.append(_run_once(source, [*forward, *extra], tmp / f"{side}-{r}.json", opts.against_timeout))
        print(f"jobq benchmark --against {opts.against}: {time.monotonic() - started:.0f}s")
        print(compare(rev_runs, head_runs, f"{checkout.title}, jobq from {imports[0]}", f"{head_title}, jobq from {imports[1]}"))
        print()
        print(render_head(head_report(head_runs)), flush=True)
    finally:
        if checkout is not None:
            checkout.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json_path:
        data = {"rev": opts.against, "rev_sha": checkout.sha if checkout else None, "rev_runs": rev_runs, "head_runs": head_runs}
        Path(opts.json_path).write_text(json.dumps(data, indent=2) + "\n")
    return 1 if any(run.get("errors") for run in head_runs) else 0
