"""End-of-run checks of ``scripts/chaos.py``: read-only readers of the soak's database (SQLite
with sqlite3, PostgreSQL with psycopg in read-only transactions), the integrity checks (row
rules, counts, ``PRAGMA integrity_check`` / index scans and amcheck), the token log, and the
report whose lines (``succeeded: X/N``, ``lost: L``, ``integrity: ok``, ...) the chaos module
docstring describes.

Imported by ``chaos.py``, which puts scripts/ and the repository (jobq from this checkout) on
``sys.path`` first.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobq.core.models import STATES
from jobq.store.invariants import ROW_RULES

if TYPE_CHECKING:
    from chaos import Chaos, Sup

CHAOS_FAILURES = {"WorkerDied", "SupervisorLost", "LeaseExpired"}
UNFINISHED = ("queued", "scheduled", "waiting")


# -- reading the results ----------------------------------------------------------------
def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def shown(db: str) -> str:
    """The database for printing: a URL without its password."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", db)


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
        elif state in ("claimed", "running"):
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
