"""Chaos soak for jobq: run N short jobs on K supervisors while SIGKILLing workers and supervisors.

    python scripts/chaos.py [--jobs N] [--duration S] [--supervisors K] [--db PATH|URL]
                            [--run-dir DIR] [--concurrency C] [--seed X] [--job-seconds T] [--retries R]

``--db`` is a SQLite file or a ``postgresql://user@host:port/db?schema=NAME`` URL (the
PostgreSQL backend); everything below is the same on both but where noted.

What it does:

1. Creates (or reuses) the database and submits N jobs ``chaos_tasks:record(log, token, T)`` in
   one transaction. Each execution appends ``<token> <job id> <attempt> <worker pid>
   <supervisor pid>`` to ``tokens.log`` in the run directory (``--run-dir``; by default
   ``<db>-chaos-<run>/`` beside a database file, a new temporary directory for a URL), then
   sleeps T seconds (by default T is chosen so the work roughly spans the chaos phase).
2. Starts K supervisors, ``python -m jobq --db DB worker start -c C``, each in its own session
   with its log in the run directory, and for ``--duration`` seconds, about every
   ``--kill-interval`` seconds, SIGKILLs either a random worker process (a child of a
   supervisor, found through /proc) or, with probability ``--supervisor-kill-ratio``, a random
   supervisor; a killed (or crashed) supervisor is replaced at once so K keep running.
3. Stops killing, waits (up to ``--finish-timeout``) until none of the N jobs is queued or
   running, then SIGTERMs the supervisors (a graceful drain) and waits for them to exit.
4. Checks (``chaos_checks.py``) with read-only queries (sqlite3, or psycopg in read-only
   transactions) and the token log, and prints:

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
   - ``integrity: ok``: no problem found in one snapshot of the database, and the line
     ``integrity checked (BACKEND): ...`` says what was checked. On both backends: every
     job row obeys the rules of its state (a jobq state; ``running`` with an owner, a lease,
     a start time and an attempt; no lease unless running; no owner or finish time while
     unfinished; a finish time once finished; ``succeeded`` with a result and no error,
     ``failed`` with an error; attempts in range; attempt errors only of existing jobs and
     attempts made) and the counts by state add up to the rows. SQLite adds ``PRAGMA
     integrity_check`` and the kept counts (``job_counts``, what ``jobq status`` shows)
     equal to the rows; PostgreSQL adds counts through the indexes equal to a table scan
     (by state and by id) and amcheck's ``bt_index_check`` where that extension is
     installed (it is never created). Then ``worker kills: W``,
     ``supervisor kills: K2``, and the problems seen (supervisors that exited on their own,
     workers that outlived their supervisor, tracebacks in the supervisor logs, lock files
     and output directories left in the supervisors' presence directory: ``<db>-jobq``, or
     for a URL ``jobq-<hash>`` in the temporary directory the supervisors are given,
     ``<run dir>/tmp``).

Exit status: 0 when nothing was lost, stuck, unfinished or unexpectedly failed and the
database is intact; 1 otherwise; 2 on bad arguments. Every process started is ended by pid
(process group) on exit, including on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from chaos_checks import UNFINISHED, is_postgres, open_reader, report, shown  # noqa: E402 - the end-of-run checks

import jobq  # noqa: E402
from jobq.core.local import presence_dir  # noqa: E402

TARGET = "chaos_tasks:record"


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

    @property
    def presence_dir(self) -> Path:
        """Where the supervisors keep their lock files and output directories (jobq.local):
        ``<db>-jobq`` beside a database file; for a server URL, a directory in *their*
        temporary directory, which is ours (``TMPDIR``) here."""
        if not is_postgres(self.db):
            return Path(presence_dir(self.db))
        saved = tempfile.tempdir
        tempfile.tempdir = str(self.tmp_dir)
        try:
            return Path(presence_dir(self.db))
        finally:
            tempfile.tempdir = saved

    def debris(self) -> tuple[list[str], list[str], list[str]]:
        """Scratch directories, lock files and worker output directories left behind (by
        supervisors that were killed)."""
        scratch = sorted(p.name for p in self.tmp_dir.glob("jobq-*") if p != self.presence_dir)
        locks = sorted(p.name for p in self.presence_dir.glob("*.lock"))
        work_dirs = sorted(p.name for p in self.presence_dir.glob("*") if p.is_dir())
        return scratch, locks, work_dirs

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


# -- the soak -------------------------------------------------------------------------------
def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def soak(options: argparse.Namespace) -> int:
    rng = random.Random(options.seed)
    q = jobq.Queue(options.db)
    db = q.store.url  # an absolute path for SQLite, the URL as given for PostgreSQL
    run = uuid.uuid4().hex[:8]
    if options.run_dir:
        run_dir = Path(options.run_dir).resolve()
    elif is_postgres(db):
        run_dir = Path(tempfile.mkdtemp(prefix=f"jobq-chaos-{run}-"))
    else:
        run_dir = Path(f"{db}-chaos-{run}")
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "tokens.log"
    k, c, n = options.supervisors, options.concurrency, options.jobs
    job_seconds = options.job_seconds
    if job_seconds is None:
        job_seconds = round(min(0.1, max(0.0, 0.8 * options.duration * k * c / max(n, 1))), 4)
    print(
        f"chaos run {run}: db {shown(db)} ({'postgresql' if is_postgres(db) else 'sqlite'}), seed {options.seed}, "
        f"{n} jobs of {job_seconds:g}s, {k} supervisors x {c} workers"
    )
    print(f"run directory (token log, supervisor logs): {run_dir}", flush=True)

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
        reader = open_reader(db)
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
                counts = reader.state_counts(first, last)
                print(
                    f"  t={time.monotonic() - start:4.0f}s {dict(counts)} kills: {chaos.worker_kills} workers, "
                    f"{chaos.sup_kills} supervisors",
                    flush=True,
                )
        print(f"chaos over after {time.monotonic() - start:.0f}s; letting the supervisors finish", flush=True)
        deadline = time.monotonic() + options.finish_timeout
        while True:
            chaos.replace_dead(k)
            counts = reader.state_counts(first, last)
            pending = sum(counts.get(s, 0) for s in (*UNFINISHED, "claimed", "running"))
            if pending == 0:
                break
            if time.monotonic() > deadline:
                timed_out = True
                print(f"!! finish deadline reached with {dict(counts)}", flush=True)
                break
            time.sleep(0.25)
        reader.close()
        q.store.close()
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
    parser.add_argument(
        "--db", help="database file or postgresql://... URL (default: a new SQLite file in a temporary directory)"
    )
    parser.add_argument(
        "--run-dir",
        help="directory for the token log and supervisor logs (default: <db>-chaos-<run> beside a database "
        "file, a new temporary directory for a URL); must not hold a tokens.log yet",
    )
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
    if options.run_dir and (Path(options.run_dir) / "tokens.log").exists():
        parser.error(f"--run-dir {options.run_dir} already holds a tokens.log (of another run)")
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
