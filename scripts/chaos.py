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
4. Checks with read-only queries (sqlite3, or psycopg in read-only transactions) and the
   token log, and prints:

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jobq  # noqa: E402
from jobq.local import presence_dir  # noqa: E402
from jobq.models import MAX_LOST_ATTEMPTS, STATES  # noqa: E402

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


# -- reading the results ----------------------------------------------------------------
def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def shown(db: str) -> str:
    """The database for printing: a URL without its password."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", db)


# Row rules that hold for every job at rest on either backend (from jobq/store/sql.py: how
# claims, fenced finishes, retries, take-backs and cancellations write a row). Each query
# returns the ids of the rows that break its rule.
_STATES_SQL = ",".join(f"'{s}'" for s in STATES)
ROW_RULES: list[tuple[str, str]] = [
    ("state not a jobq state", f"SELECT id FROM jobs WHERE state NOT IN ({_STATES_SQL})"),
    (
        "running without owner/lease/start or attempt",
        "SELECT id FROM jobs WHERE state='running' AND (owner IS NULL OR lease_expires_at IS NULL "
        "OR started_at IS NULL OR attempts < 1)",
    ),
    ("lease held while not running", "SELECT id FROM jobs WHERE state<>'running' AND lease_expires_at IS NOT NULL"),
    (
        "unfinished with an owner or a finish time",
        "SELECT id FROM jobs WHERE state IN ('queued','scheduled','waiting') AND (owner IS NOT NULL OR finished_at IS NOT NULL)",
    ),
    (
        "finished without a finish time",
        "SELECT id FROM jobs WHERE state IN ('succeeded','failed','cancelled') AND finished_at IS NULL",
    ),
    (
        "succeeded without a result or with an error",
        "SELECT id FROM jobs WHERE state='succeeded' AND (result IS NULL OR error IS NOT NULL)",
    ),
    ("failed without an error", "SELECT id FROM jobs WHERE state='failed' AND error IS NULL"),
    (
        "attempts out of range",
        f"SELECT id FROM jobs WHERE attempts < 0 OR max_attempts < 1 OR attempts > max_attempts + {MAX_LOST_ATTEMPTS}",
    ),
    (
        "attempt error of a missing job or an attempt not made",
        "SELECT e.job_id FROM job_errors e LEFT JOIN jobs j ON j.id=e.job_id "
        "WHERE j.id IS NULL OR e.attempt < 1 OR e.attempt > j.attempts",
    ),
]


class Reader:
    """Read-only queries on the soak's database, the same on both backends."""

    backend = ""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def state_counts(self, first: int, last: int) -> Counter[str]:
        return Counter(dict(self.rows("SELECT state, count(*) FROM jobs WHERE id BETWEEN ? AND ? GROUP BY state", (first, last))))

    def jobs(self, first: int, last: int) -> dict[int, tuple[str, str | None]]:
        return {
            r[0]: (r[1], r[2]) for r in self.rows("SELECT id, state, error FROM jobs WHERE id BETWEEN ? AND ?", (first, last))
        }

    def job(self, job_id: int) -> tuple[Any, ...] | None:
        found = self.rows(
            "SELECT state, attempts, max_attempts, owner, worker, lease_expires_at, error FROM jobs WHERE id=?", (job_id,)
        )
        return found[0] if found else None

    def job_errors(self, job_id: int) -> list[tuple[int, str]]:
        return [
            (r[0], r[1]) for r in self.rows("SELECT attempt, error FROM job_errors WHERE job_id=? ORDER BY attempt", (job_id,))
        ]

    def integrity(self) -> tuple[list[str], str]:
        """(problems, what was checked): the backend's own check, then the row rules and
        the counts, read in one snapshot."""
        raise NotImplementedError

    def _row_checks(self) -> tuple[list[str], str]:
        problems = []
        for rule, sql in ROW_RULES:
            bad = sorted({r[0] for r in self.rows(sql)})
            if bad:
                problems.append(f"{rule}: {len(bad)} (ids {', '.join(map(str, bad[:10]))})")
        total = self.rows("SELECT count(*) FROM jobs")[0][0]
        by_state = sum(n for (n,) in self.rows("SELECT count(*) FROM jobs GROUP BY state"))
        if by_state != total:
            problems.append(f"counts by state add up to {by_state}, the table holds {total} rows")
        return problems, f"{len(ROW_RULES)} row rules on all {total} jobs, counts by state = rows"


class SQLiteReader(Reader):
    backend = "sqlite"

    def __init__(self, path: str) -> None:
        try:
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            self.conn = sqlite3.connect(path, timeout=30)  # only read below

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        self.conn.close()

    def integrity(self) -> tuple[list[str], str]:
        pragma = [r[0] for r in self.rows("PRAGMA integrity_check")]
        problems = [] if pragma == ["ok"] else [f"PRAGMA integrity_check: {'; '.join(map(str, pragma[:5]))}"]
        self.conn.execute("BEGIN")  # one snapshot for the rules and the counts
        try:
            rule_problems, checked = self._row_checks()
            # The counts `jobq status` shows (kept by triggers and by the store) against the rows.
            kept = {(q, s): n for q, s, n in self.rows("SELECT queue, state, n FROM job_counts") if n}
            real = {(q, s): n for q, s, n in self.rows("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")}
        finally:
            self.conn.execute("ROLLBACK")
        if kept != real:
            diff = {f"{q}/{s}": (kept.get((q, s), 0), real.get((q, s), 0)) for q, s in sorted(set(kept) | set(real))}
            rule_problems.append(
                f"job_counts differ from the rows (kept, real): { {k: v for k, v in diff.items() if v[0] != v[1]} }"
            )
        return problems + rule_problems, f"PRAGMA integrity_check, {checked}, job_counts = rows"


class PostgresReader(Reader):
    """psycopg in read-only transactions, in the jobq schema of the URL."""

    backend = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg

        from jobq.store.postgres import split_url

        conninfo, self.schema = split_url(url)
        self.conn = psycopg.connect(
            conninfo, autocommit=True, options=f"-c search_path={self.schema} -c default_transaction_read_only=on"
        )

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql.replace("?", "%s"), tuple(params)).fetchall()

    def close(self) -> None:
        self.conn.close()

    def integrity(self) -> tuple[list[str], str]:
        problems: list[str] = []
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one snapshot
            problems, checked = self._row_checks()
            # The indexes agree with the table: counts by state through a sequential scan,
            # then through the indexes only (jobs_state_queue, the partial state indexes).
            for name in ("indexscan", "indexonlyscan", "bitmapscan"):
                self.conn.execute(f"SET LOCAL enable_{name} = off")
            heap = dict(self.rows("SELECT state, count(*) FROM jobs GROUP BY state"))
            heap_ids = self.rows("SELECT count(*), coalesce(sum(id), 0) FROM jobs")[0]
            for name in ("indexscan", "indexonlyscan", "bitmapscan"):
                self.conn.execute(f"SET LOCAL enable_{name} = on")
            self.conn.execute("SET LOCAL enable_seqscan = off")
            index = {s: self.rows("SELECT count(*) FROM jobs WHERE state=?", (s,))[0][0] for s in STATES}
            index_ids = self.rows("SELECT count(*), coalesce(sum(id), 0) FROM jobs WHERE id > ?", (-1,))[0]
            if {s: n for s, n in index.items() if n} != heap:
                problems.append(f"index scans count {index} by state, the table scan {heap}")
            if tuple(index_ids) != tuple(heap_ids):
                problems.append(f"primary key index holds {index_ids} (count, sum of ids), the table {heap_ids}")
            # amcheck's B-tree verification where the extension is installed (never created here).
            amcheck = self.rows(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid=e.extnamespace WHERE e.extname='amcheck'"
            )
            if amcheck:
                indexes = self.rows(
                    "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid=i.indexrelid "
                    "JOIN pg_namespace n ON n.oid=c.relnamespace JOIN pg_am a ON a.oid=c.relam "
                    "WHERE n.nspname=? AND a.amname='btree'",
                    (self.schema,),
                )
                for (index_name,) in indexes:
                    try:
                        self.rows(f"SELECT {amcheck[0][0]}.bt_index_check(?::regclass, true)", (index_name,))
                    except Exception as exc:  # noqa: BLE001 - reported, not raised
                        problems.append(f"bt_index_check({index_name}): {str(exc).strip().splitlines()[0]}")
                        break
        tail = f"amcheck bt_index_check on {len(indexes)} indexes" if amcheck else "amcheck not installed (skipped)"
        return problems, f"{checked}, index scans = table scan by state and by id, {tail}"


def open_reader(db: str) -> Reader:
    return PostgresReader(db) if is_postgres(db) else SQLiteReader(db)


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


def explain(reader: Reader, chaos: Chaos, job_id: int, runs: list[Execution], owners: dict[str, Sup]) -> str:
    row = reader.job(job_id)
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
    for attempt, e in reader.job_errors(job_id):
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
    reader = open_reader(chaos.db)
    n = len(ids)
    idset = set(ids)
    rows = {job_id: row for job_id, row in reader.jobs(min(ids), max(ids)).items() if job_id in idset}
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
    integrity, integrity_checked = reader.integrity()
    integrity_ok = not integrity
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
                print(explain(reader, chaos, job_id, runs.get(tokens[job_id], []), owners))

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
    print(f"integrity: {'ok' if integrity_ok else 'FAIL: ' + '; '.join(integrity[:5])}")
    print(f"integrity checked ({reader.backend}): {integrity_checked}")
    print(f"worker kills: {chaos.worker_kills}")
    print(f"supervisor kills: {chaos.sup_kills}")
    print(f"supervisors started: {len(chaos.sups)}")
    print(f"supervisors exited on their own: {len(chaos.crashed)}")
    print(f"supervisors forced at the end: {len(chaos.forced)}")
    print(f"orphan workers: {len(orphans)}")
    print(f"tracebacks in supervisor logs: {tracebacks}")
    scratch, locks, work_dirs = chaos.debris()
    print(
        f"left behind: {len(scratch)} scratch dirs in {chaos.tmp_dir}, {len(locks)} lock files "
        f"and {len(work_dirs)} output dirs in {chaos.presence_dir}"
    )
    reader.close()
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
            pending = sum(counts.get(s, 0) for s in (*UNFINISHED, "running"))
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
