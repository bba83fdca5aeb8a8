"""Chaos soak for jobq: run N short jobs on K supervisors while SIGKILLing workers and supervisors.

    python scripts/chaos.py [--jobs N] [--duration S] [--supervisors K] [--db PATH]
                            [--concurrency C] [--seed X] [--job-seconds T] [--retries R]

What it does:

1. Creates (or reuses) the database and submits N jobs ``chaos_tasks:record(log, token, T)`` in
   one transaction. Each execution appends ``<token> <job id> <attempt> <worker pid>
   <supervisor pid>`` to ``tokens.log`` in a run directory beside the database
   (``<db>-chaos-<run>/``), then sleeps T seconds (by default T is chosen so the work roughly
   spans the chaos phase).
2. Starts K supervisors, ``python -m jobq --db DB worker start -c C``, each in its own session
   with its log in the run directory, and for ``--duration`` seconds, about every
   ``--kill-interval`` seconds, SIGKILLs either a random worker process (a child of a
   supervisor, found through /proc) or, with probability ``--supervisor-kill-ratio``, a random
   supervisor; a killed (or crashed) supervisor is replaced at once so K keep running.
3. Stops killing, waits (up to ``--finish-timeout``) until none of the N jobs is queued or
   running, then SIGTERMs the supervisors (a graceful drain) and waits for them to exit.
4. Checks with read-only sqlite3 queries and the token log, and prints:

   - ``succeeded: X/N``
   - ``failed: F``: jobs that ended ``failed`` because of the chaos (``WorkerDied``: their
     worker was killed while running them; ``SupervisorLost``/``LeaseExpired``: their
     supervisor died too often). Expected, not lost.
   - ``lost: L``: jobs missing from the database, plus jobs marked ``succeeded`` whose token
     never reached the log (reported done, never run). Must be 0.
   - ``stuck: S``: jobs left ``running`` after every supervisor has exited. Must be 0.
   - ``unfinished: U``: jobs still queued/scheduled/waiting at the deadline. Must be 0.
   - ``unexpected: E``: jobs that failed for any other reason (a job error, a ``database is
     locked`` reaching a job, ...) or were cancelled. Must be 0.
   - ``duplicates: D``: jobs whose token appears more than once in the log; allowed for jobs
     in flight at a kill. ``duplicates unexplained: D2`` counts those with two or more
     executions in processes that were never killed (information only).
   - ``integrity: ok`` (``PRAGMA integrity_check``), ``worker kills: W``,
     ``supervisor kills: K2``, and the problems seen (supervisors that exited on their own,
     workers that outlived their supervisor, tracebacks in the supervisor logs).

Exit status: 0 when nothing was lost, stuck, unfinished or unexpectedly failed and the
database is intact; 1 otherwise; 2 on bad arguments. Every process started is ended by pid
(process group) on exit, including on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jobq  # noqa: E402

TARGET = "chaos_tasks:record"
CHAOS_FAILURES = {"WorkerDied", "SupervisorLost", "LeaseExpired"}
UNFINISHED = ("queued", "scheduled", "waiting")


# -- processes --------------------------------------------------------------------------
def scan_procs() -> dict[int, tuple[int, str, int]]:
    """Every process on the host: pid -> (ppid, state, start time in clock ticks)."""
    out: dict[int, tuple[int, str, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                data = fh.read()
        except OSError:
            continue
        rest = data[data.rindex(")") + 2 :].split()
        out[int(name)] = (int(rest[1]), rest[0], int(rest[19]))
    return out


def proc_identity(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def _is_helper(pid: int) -> bool:
    """A multiprocessing helper (resource tracker, fork server) rather than a worker."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except OSError:
        return True
    return b"resource_tracker" in cmd or b"forkserver" in cmd


@dataclass
class Sup:
    index: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Chaos:
    """The processes of one soak and what was done to them."""

    db: str
    run_dir: Path
    concurrency: int
    grace: float
    rng: random.Random
    sups: list[Sup] = field(default_factory=list)  # every supervisor ever started
    killed_workers: set[int] = field(default_factory=set)
    killed_sups: set[int] = field(default_factory=set)
    worker_kills: int = 0
    sup_kills: int = 0
    crashed: list[tuple[Sup, int]] = field(default_factory=list)  # exited on their own
    forced: list[Sup] = field(default_factory=list)  # SIGKILLed at the end (drain too slow)
    workers_seen: dict[int, tuple[int, int]] = field(default_factory=dict)  # pid -> (sup pid, start)

    def start_supervisor(self) -> Sup:
        index = len(self.sups)
        log_path = self.run_dir / f"supervisor-{index}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        env.pop("JOBQ_CONFIG", None)
        env["TMPDIR"] = str(self.tmp_dir)  # their scratch files land in the run directory, countable
        cmd = [sys.executable, "-m", "jobq", "--db", self.db, "worker", "start", "-c", str(self.concurrency)]
        cmd += ["--grace", f"{self.grace:g}"]
        with open(log_path, "ab") as fh:
            proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        sup = Sup(index, proc, log_path, time.time())
        self.sups.append(sup)
        return sup

    @property
    def tmp_dir(self) -> Path:
        path = self.run_dir / "tmp"
        path.mkdir(exist_ok=True)
        return path

    def debris(self) -> tuple[list[str], list[str]]:
        """Scratch directories and lock files left behind (by supervisors that were killed)."""
        scratch = sorted(p.name for p in self.tmp_dir.glob("jobq-*"))
        locks = sorted(p.name for p in Path(self.db + "-jobq").glob("*.lock"))
        return scratch, locks

    def live(self) -> list[Sup]:
        return [s for s in self.sups if s.proc.poll() is None]

    def workers(self, sups: list[Sup]) -> list[int]:
        """Worker pids of these supervisors (children in /proc), remembered for the end."""
        by_pid = {s.pid for s in sups}
        out = []
        for pid, (ppid, state, start) in scan_procs().items():
            if ppid in by_pid and state != "Z":
                if pid not in self.workers_seen and _is_helper(pid):
                    continue
                self.workers_seen.setdefault(pid, (ppid, start))
                out.append(pid)
        return out

    def replace_dead(self, target: int) -> None:
        """Reap supervisors that exited, note the ones that were not killed, keep ``target`` running."""
        for s in self.sups:
            code = s.proc.poll()
            if code is not None and not s.killed and all(c[0] is not s for c in self.crashed):
                self.crashed.append((s, code))
                print(f"!! supervisor {s.index} (pid {s.pid}) exited on its own with {code}; log {s.log_path}", flush=True)
        for _ in range(target - len(self.live())):
            self.start_supervisor()

    def kill_worker(self) -> bool:
        pids = self.workers(self.live())
        if not pids:
            return False
        pid = self.rng.choice(pids)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.killed_workers.add(pid)
        self.worker_kills += 1
        return True

    def kill_supervisor(self) -> bool:
        live = self.live()
        if not live:
            return False
        sup = self.rng.choice(live)
        self.workers([sup])  # remember its workers: they must die with it
        try:
            os.kill(sup.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        sup.killed = True
        self.killed_sups.add(sup.pid)
        self.sup_kills += 1
        sup.proc.wait()
        return True

    def stop_all(self, timeout: float) -> None:
        """SIGTERM every live supervisor (graceful drain), SIGKILL those still alive at ``timeout``."""
        live = self.live()
        # A supervisor still starting has no signal handlers yet: let each get going first,
        # so that every one of them is drained rather than terminated.
        ready_by = time.monotonic() + 20
        while time.monotonic() < ready_by and not all(self.started(s) for s in live if s.proc.poll() is None):
            time.sleep(0.1)
        for s in live:
            try:
                os.kill(s.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for s in live:
            try:
                code = s.proc.wait(max(0.1, deadline - time.monotonic()))
                if code != 0:
                    self.crashed.append((s, code))
            except subprocess.TimeoutExpired:
                self.forced.append(s)
                self.killed_sups.add(s.pid)
                os.killpg(s.pid, signal.SIGKILL)
                s.proc.wait()

    @staticmethod
    def started(s: Sup) -> bool:
        try:
            return " started: pid " in s.log_path.read_text(errors="replace")
        except OSError:
            return False

    def orphans(self) -> list[int]:
        """Workers still alive although their supervisor is gone (checked once all have exited)."""
        out = []
        for pid, (_, start) in self.workers_seen.items():
            ident = proc_identity(pid)
            if ident is not None and ident[1] == start and ident[0] != "Z":
                out.append(pid)
        return out

    def cleanup(self) -> None:
        """End every process this soak started, by pid / process group. Idempotent."""
        for s in self.sups:
            for kill in (os.kill, os.killpg):
                try:
                    kill(s.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for s in self.sups:
            try:
                s.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.orphans():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- reading the results ----------------------------------------------------------------
def connect_ro(db: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.Error:
        return sqlite3.connect(db, timeout=30)  # only read below


def state_counts(conn: sqlite3.Connection, first: int, last: int) -> Counter[str]:
    return Counter(dict(conn.execute("SELECT state, count(*) FROM jobs WHERE id BETWEEN ? AND ? GROUP BY state", (first, last))))


@dataclass
class Execution:
    job_id: int
    attempt: int
    pid: int
    ppid: int


def read_log(path: Path) -> dict[str, list[Execution]]:
    runs: dict[str, list[Execution]] = defaultdict(list)
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            print(f"!! malformed log line: {line!r}")
            continue
        token, job_id, attempt, pid, ppid = parts
        runs[token].append(Execution(int(job_id), int(attempt), int(pid), int(ppid)))
    return runs


def supervisor_ids(sups: list[Sup]) -> dict[str, Sup]:
    """jobq supervisor id (the ``owner`` column) -> our process, from the start log lines."""
    out = {}
    for s in sups:
        try:
            text = s.log_path.read_text(errors="replace")
        except OSError:
            continue
        for m in re.finditer(r"supervisor (\w+) started: pid (\d+)", text):
            out[m.group(1)] = s
    return out


def log_mentions(sups: list[Sup], job_id: int, limit: int = 8) -> list[str]:
    pattern = re.compile(rf"(job {job_id}\b|[:,] {job_id}(,|$))")
    hits = []
    for s in sups:
        try:
            lines = s.log_path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        hits += [f"supervisor-{s.index}.log: {line}" for line in lines if pattern.search(line)]
    return hits[:limit]


def explain(conn: sqlite3.Connection, chaos: Chaos, job_id: int, runs: list[Execution], owners: dict[str, Sup]) -> str:
    row = conn.execute(
        "SELECT state, attempts, max_attempts, owner, worker, lease_expires_at, error FROM jobs WHERE id=?", (job_id,)
    ).fetchone()
    if row is None:
        return f"  job {job_id}: missing from the database"
    state, attempts, max_attempts, owner, worker, lease, error = row
    sup = owners.get(owner or "")
    owner_text = f"{owner} (supervisor-{sup.index}, pid {sup.pid}, {'killed' if sup.killed else 'not killed'})" if sup else owner
    err = json.loads(error) if error else None
    lines = [
        f"  job {job_id}: state={state} attempts={attempts}/{max_attempts} owner={owner_text} worker={worker} "
        f"lease_expires_at={lease} error={err and (err.get('type'), err.get('message'))}"
    ]
    for attempt, e in conn.execute("SELECT attempt, error FROM job_errors WHERE job_id=? ORDER BY rowid", (job_id,)):
        d = json.loads(e)
        lines.append(f"    attempt {attempt} error: {d.get('type')}: {d.get('message')}")
    for r in runs:
        how = "no kill"
        if r.pid in chaos.killed_workers:
            how = "worker killed"
        elif r.ppid in chaos.killed_sups:
            how = "supervisor killed"
        lines.append(f"    ran: attempt {r.attempt} in worker {r.pid} of supervisor pid {r.ppid} ({how})")
    lines += [f"    {m}" for m in log_mentions(chaos.sups, job_id)]
    return "\n".join(lines)


def report(chaos: Chaos, ids: list[int], tokens: dict[int, str], log_path: Path, timed_out: bool) -> int:
    conn = connect_ro(chaos.db)
    n = len(ids)
    idset = set(ids)
    rows = {
        r[0]: r[1:]
        for r in conn.execute("SELECT id, state, error FROM jobs WHERE id BETWEEN ? AND ?", (min(ids), max(ids)))
        if r[0] in idset
    }
    runs = read_log(log_path)
    owners = supervisor_ids(chaos.sups)
    succeeded, failed, lost, stuck, unfinished, unexpected = [], [], [], [], [], []
    odd_deaths: list[int] = []  # WorkerDied naming a worker this soak did not kill
    fail_types: Counter[str] = Counter()
    for job_id in ids:
        row = rows.get(job_id)
        if row is None:
            lost.append(job_id)
            continue
        state, error = row
        ran = tokens[job_id] in runs
        if state == "succeeded":
            (succeeded if ran else lost).append(job_id)
        elif state == "running":
            stuck.append(job_id)
        elif state in UNFINISHED:
            unfinished.append(job_id)
        else:
            kind = (json.loads(error) or {}).get("type") if error else None
            fail_types[f"{state}:{kind}"] += 1
            (failed if state == "failed" and kind in CHAOS_FAILURES else unexpected).append(job_id)
            if kind == "WorkerDied":
                m = re.search(r"worker (\d+) died", (json.loads(error) or {}).get("message", ""))
                if m is None or int(m.group(1)) not in chaos.killed_workers:
                    odd_deaths.append(job_id)
    duplicates, unexplained = [], []
    for job_id in ids:
        execs = runs.get(tokens[job_id], [])
        if len(execs) > 1:
            duplicates.append(job_id)
            survivors = [e for e in execs if e.pid not in chaos.killed_workers and e.ppid not in chaos.killed_sups]
            if len(survivors) > 1:
                unexplained.append(job_id)
    integrity = conn.execute("PRAGMA integrity_check").fetchall()
    integrity_ok = integrity == [("ok",)]
    orphans = chaos.orphans()
    tracebacks = 0
    for s in chaos.sups:
        try:
            tracebacks += s.log_path.read_text(errors="replace").count("Traceback")
        except OSError:
            pass

    def show(title: str, job_ids: list[int], limit: int = 10) -> None:
        if job_ids:
            print(f"-- {title}: {len(job_ids)} (first {min(limit, len(job_ids))})")
            for job_id in job_ids[:limit]:
                print(explain(conn, chaos, job_id, runs.get(tokens[job_id], []), owners))

    show("lost", lost)
    show("stuck", stuck)
    show("unfinished", unfinished, 5)
    show("unexpected", unexpected)
    show("duplicates unexplained by a kill", unexplained)
    show("WorkerDied naming a worker that was not killed", odd_deaths)
    if chaos.crashed:
        for s, code in chaos.crashed:
            print(f"-- supervisor {s.index} (pid {s.pid}) exited with {code} without being killed: {s.log_path}")
    if chaos.forced:
        print(f"-- supervisors that did not drain in time and were SIGKILLed: {[s.pid for s in chaos.forced]}")
    print(f"jobs: {n}")
    print(f"succeeded: {len(succeeded)}/{n}")
    chaos_types = {k.split(":", 1)[1]: v for k, v in fail_types.items() if k.split(":", 1)[1] in CHAOS_FAILURES}
    print(f"failed: {len(failed)}" + (f" {dict(sorted(chaos_types.items()))}" if failed else ""))
    print(f"lost: {len(lost)}")
    print(f"stuck: {len(stuck)}")
    print(f"unfinished: {len(unfinished)}" + (" (finish deadline reached)" if timed_out else ""))
    print(f"unexpected: {len(unexpected)}" + (f" ({dict(fail_types)})" if unexpected else ""))
    print(f"duplicates: {len(duplicates)}")
    print(f"duplicates unexplained: {len(unexplained)}")
    print(f"worker deaths unexplained: {len(odd_deaths)}")
    print(f"integrity: {'ok' if integrity_ok else integrity[:5]}")
    print(f"worker kills: {chaos.worker_kills}")
    print(f"supervisor kills: {chaos.sup_kills}")
    print(f"supervisors started: {len(chaos.sups)}")
    print(f"supervisors exited on their own: {len(chaos.crashed)}")
    print(f"supervisors forced at the end: {len(chaos.forced)}")
    print(f"orphan workers: {len(orphans)}")
    print(f"tracebacks in supervisor logs: {tracebacks}")
    scratch, locks = chaos.debris()
    print(f"left behind: {len(scratch)} scratch dirs in {chaos.tmp_dir}, {len(locks)} lock files in {chaos.db}-jobq")
    conn.close()
    problems = [
        name
        for name, bad in (
            ("lost", lost),
            ("stuck", stuck),
            ("unfinished", unfinished),
            ("unexpected", unexpected),
            ("integrity", not integrity_ok),
        )
        if bad
    ]
    print(f"result: {'FAIL (' + ', '.join(problems) + ')' if problems else 'ok'}", flush=True)
    return 1 if problems else 0


# -- the soak -------------------------------------------------------------------------------
def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def soak(options: argparse.Namespace) -> int:
    rng = random.Random(options.seed)
    db = os.path.abspath(options.db)
    run = uuid.uuid4().hex[:8]
    run_dir = Path(f"{db}-chaos-{run}")
    run_dir.mkdir(parents=True)
    log_path = run_dir / "tokens.log"
    k, c, n = options.supervisors, options.concurrency, options.jobs
    job_seconds = options.job_seconds
    if job_seconds is None:
        job_seconds = round(min(0.1, max(0.0, 0.8 * options.duration * k * c / max(n, 1))), 4)
    print(f"chaos run {run}: db {db}, seed {options.seed}, {n} jobs of {job_seconds:g}s, {k} supervisors x {c} workers")
    print(f"run directory (token log, supervisor logs): {run_dir}", flush=True)

    q = jobq.Queue(db)
    items = [(str(log_path), f"{run}-{i}", job_seconds) for i in range(n)]
    jobs = q.submit_many(TARGET, items, retries=options.retries)
    ids = [j.id for j in jobs]
    tokens = {job_id: item[1] for job_id, item in zip(ids, items, strict=True)}
    first, last = min(ids), max(ids)
    print(f"submitted jobs {first}..{last}", flush=True)

    chaos = Chaos(db, run_dir, c, options.grace, rng)
    old = {s: signal.signal(s, _on_term) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    timed_out = False
    try:
        for _ in range(k):
            chaos.start_supervisor()
        conn = connect_ro(db)
        start = time.monotonic()
        chaos_end = start + options.duration
        next_print = start + 5
        while time.monotonic() < chaos_end:
            time.sleep(min(rng.uniform(0.5, 1.5) * options.kill_interval, max(0.0, chaos_end - time.monotonic())))
            if time.monotonic() >= chaos_end:
                break
            chaos.replace_dead(k)
            if rng.random() < options.supervisor_kill_ratio:
                if chaos.kill_supervisor():
                    chaos.start_supervisor()
            else:
                chaos.kill_worker()
            if time.monotonic() >= next_print:
                next_print += 5
                counts = state_counts(conn, first, last)
                print(
                    f"  t={time.monotonic() - start:4.0f}s {dict(counts)} kills: {chaos.worker_kills} workers, "
                    f"{chaos.sup_kills} supervisors",
                    flush=True,
                )
        print(f"chaos over after {time.monotonic() - start:.0f}s; letting the supervisors finish", flush=True)
        deadline = time.monotonic() + options.finish_timeout
        while True:
            chaos.replace_dead(k)
            counts = state_counts(conn, first, last)
            pending = sum(counts.get(s, 0) for s in (*UNFINISHED, "running"))
            if pending == 0:
                break
            if time.monotonic() > deadline:
                timed_out = True
                print(f"!! finish deadline reached with {dict(counts)}", flush=True)
                break
            time.sleep(0.25)
        conn.close()
        print(f"all jobs ended after {time.monotonic() - start:.0f}s; stopping the supervisors", flush=True)
        chaos.stop_all(options.grace + 30)
        for pid in chaos.orphans():
            print(f"!! worker {pid} of supervisor {chaos.workers_seen[pid][0]} is still alive after it exited")
        return report(chaos, ids, tokens, log_path, timed_out)
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        chaos.cleanup()
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Chaos soak for jobq: N jobs on K supervisors while workers and supervisors are SIGKILLed.",
        epilog="Prints succeeded/failed/lost/stuck/duplicates/integrity and kill counts; exits 1 on any loss, "
        "stuck or unfinished job, unexpected failure, or integrity error.",
    )
    parser.add_argument("--jobs", type=int, default=5000, help="number of jobs (default 5000)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of killing (default 30)")
    parser.add_argument("--supervisors", type=int, default=3, help="supervisors kept running (default 3)")
    parser.add_argument("--db", help="database file (default: a new one in a temporary directory)")
    parser.add_argument("--concurrency", "-c", type=int, default=2, help="workers per supervisor (default 2)")
    parser.add_argument("--seed", type=int, help="random seed for the kill choices (default: random, printed)")
    parser.add_argument(
        "--job-seconds", type=float, help="how long each job sleeps (default: chosen so the work spans the chaos, max 0.1)"
    )
    parser.add_argument("--retries", type=int, default=0, help="retries per job (default 0: a killed worker fails its job)")
    parser.add_argument("--kill-interval", type=float, default=0.5, help="mean seconds between kills (default 0.5)")
    parser.add_argument(
        "--supervisor-kill-ratio", type=float, default=0.2, help="share of kills aimed at supervisors (default 0.2)"
    )
    parser.add_argument("--grace", type=float, default=10.0, help="drain grace given to the supervisors (default 10)")
    parser.add_argument(
        "--finish-timeout", type=float, default=120.0, help="seconds to wait after the chaos for every job to end (default 120)"
    )
    options = parser.parse_args(argv)
    if options.jobs < 1 or options.supervisors < 1 or options.concurrency < 1 or options.duration < 0:
        parser.error("--jobs, --supervisors and --concurrency must be at least 1, --duration not negative")
    if not 0 <= options.supervisor_kill_ratio <= 1 or options.kill_interval <= 0:
        parser.error("--supervisor-kill-ratio must be in [0, 1] and --kill-interval positive")
    if options.seed is None:
        options.seed = random.randrange(2**32)
    if options.db is None:
        options.db = os.path.join(tempfile.mkdtemp(prefix="jobq-chaos-"), "chaos.db")
    try:
        return soak(options)
    except KeyboardInterrupt:
        print("interrupted; every process started was ended", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
