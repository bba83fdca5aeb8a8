"""The chaos soak (issue 3): scripts/chaos.py SIGKILLs workers and supervisors while jobs run,
and nothing may be lost, stuck or run twice outside a kill. Real processes, real signals.
On SQLite and (issue 6: `scripts/chaos.py --db postgresql://...` passes) on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq.store.invariants import ROW_RULES

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "chaos.py"


def _leftovers(db: str) -> list[int]:
    """Pids of live processes whose command line names this database."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{name}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if db.encode() in cmd and state != "Z":
            pids.append(int(name))
    return pids


def run_chaos(tmp_path: Path, *args: str, timeout: float, db: str | None = None) -> tuple[int, str, str]:
    """Run chaos.py on ``db`` (default: a fresh database file in tmp_path); returns (exit code,
    stdout, db). For a URL the run directory is tmp_path/run. On timeout it is asked to stop
    (it then ends what it started); whatever is left is killed."""
    if db is None:
        db = str(tmp_path / "chaos.db")
    else:
        args = ("--run-dir", str(tmp_path / "run"), *args)
    env = dict(os.environ)
    env.pop("JOBQ_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--db", db, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"chaos.py did not finish in {timeout}s:\n{out[-4000:]}")
    finally:
        left = _leftovers(db)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not left, f"chaos.py left processes running: {left}"
    return proc.returncode, out, db


def figure(out: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}: (.*)$", out, re.M)
    assert m, f"no '{name}:' line in the output:\n{out[-4000:]}"
    return m.group(1).strip()


def number(out: str, name: str) -> int:
    return int(figure(out, name).split()[0].split("/")[0])


def sql(db: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One statement on the database behind jobq's back (``?`` placeholders), committed."""
    if not db.startswith("postgresql://"):
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute(statement, tuple(params)).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    import psycopg

    from jobq.store.postgres import split_url

    conninfo, schema = split_url(db)
    with psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={schema}") as pg:
        cur = pg.execute(statement.replace("?", "%s"), tuple(params))
        return cur.fetchall() if cur.description else []


def check_against_db(out: str, db: str, jobs: int) -> None:
    """Recount from the database and the token log what the script printed."""
    run_dir = Path(figure(out, "run directory (token log, supervisor logs)"))
    states = dict(sql(db, "SELECT state, count(*) FROM jobs GROUP BY state"))
    failed_types = [json.loads(e)["type"] for (e,) in sql(db, "SELECT error FROM jobs WHERE state='failed'")]
    succeeded_args = [json.loads(a) for (a,) in sql(db, "SELECT args FROM jobs WHERE state='succeeded'")]
    logged = {line.split()[0] for line in (run_dir / "tokens.log").read_text().splitlines()}
    assert sum(states.values()) == jobs
    assert figure(out, "succeeded") == f"{states.get('succeeded', 0)}/{jobs}"
    assert number(out, "failed") == states.get("failed", 0)
    assert set(failed_types) <= {"WorkerDied", "SupervisorLost", "LeaseExpired"}, failed_types
    assert states.get("succeeded", 0) + states.get("failed", 0) == jobs, states
    assert all(args[1] in logged for args in succeeded_args), "a job succeeded without running"


@pytest.mark.timeout(180)
def test_chaos_soak_30s(tmp_path: Path) -> None:
    code, out, db = run_chaos(tmp_path, "--duration", "30", "--jobs", "2000", "--supervisors", "3", "--seed", "7", timeout=170)
    print(out)
    assert_soak_passed(code, out)
    assert figure(out, "integrity checked (sqlite)").startswith(f"PRAGMA integrity_check, {len(ROW_RULES)} row rules"), out
    check_against_db(out, db, 2000)


def assert_soak_passed(code: int, out: str) -> None:
    assert figure(out, "lost") == "0", out
    assert figure(out, "stuck") == "0", out
    assert figure(out, "unfinished").startswith("0"), out
    assert figure(out, "unexpected").startswith("0"), out
    assert figure(out, "integrity") == "ok", out
    assert number(out, "worker kills") > 0, out
    assert number(out, "supervisor kills") > 0, out
    # Jobs run twice only when a kill interrupted an earlier run.
    assert number(out, "duplicates unexplained") == 0, out
    assert number(out, "orphan workers") == 0, out
    assert code == 0, out


@pytest.mark.timeout(120)
def test_chaos_soak_postgres(tmp_path: Path, pg_url: str) -> None:
    """The soak on PostgreSQL: supervisors and workers SIGKILLed, nothing lost or stuck, the
    rows consistent; lock files of killed supervisors swept from the presence directory."""
    code, out, db = run_chaos(
        tmp_path, "--duration", "20", "--jobs", "1000", "--supervisors", "3", "--seed", "5", timeout=110, db=pg_url
    )
    print(out)
    assert re.search(r"^chaos run \w+: db postgresql://\S+ \(postgresql\)", out, re.M), out
    assert figure(out, "integrity checked (postgresql)").startswith(f"{len(ROW_RULES)} row rules on all 1000 jobs"), out
    assert_soak_passed(code, out)
    check_against_db(out, db, 1000)
    run_dir = tmp_path / "run"
    assert figure(out, "run directory (token log, supervisor logs)") == str(run_dir), out
    assert (run_dir / "tokens.log").exists() and list(run_dir.glob("supervisor-*.log")), out
    presence = figure(out, "left behind").rsplit(" in ", 1)[1]
    assert Path(presence).parent == run_dir / "tmp", out  # where the supervisors put it
    assert not Path(presence).exists(), out  # every supervisor is gone: the last one out removed the directory


@pytest.mark.timeout(90)
def test_chaos_quick(tmp_path: Path) -> None:
    code, out, db = run_chaos(tmp_path, "--duration", "3", "--jobs", "200", "--kill-interval", "0.2", "--seed", "11", timeout=80)
    assert code == 0, out
    for name in ("lost", "stuck"):
        assert figure(out, name) == "0", out
    assert figure(out, "integrity") == "ok", out
    assert number(out, "worker kills") + number(out, "supervisor kills") > 0, out
    check_against_db(out, db, 200)


@pytest.mark.timeout(60)
def test_chaos_checks_can_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checker itself: a deleted job is lost, a `running` job with no supervisor is stuck,
    a `succeeded` job that never logged its token is lost, a job run twice without a kill
    is an unexplained duplicate, and the exit status says so."""
    chaos = import_chaos()
    db = str(tmp_path / "c.db")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = run_dir / "tokens.log"
    q = jobq.Queue(db)
    items = [(str(log), f"t{i}", 0.0) for i in range(6)]
    ids = [j.id for j in q.submit_many("tests.tasks:record", [(str(log), "x")] * 6)]
    tokens = {job_id: item[1] for job_id, item in zip(ids, items, strict=True)}
    a, b, c, d, e, f = ids
    lines = [f"t{i} {job_id} 1 100 99" for i, job_id in enumerate(ids) if job_id not in (a, c)]
    lines.append(f"t4 {e} 2 101 99")  # e ran twice, in processes nobody killed
    log.write_text("\n".join(lines) + "\n")
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM jobs WHERE id=?", (a,))
    # Rows as jobq writes them (the integrity rules hold): b running for a dead supervisor.
    conn.execute(
        "UPDATE jobs SET state='running', owner='gone', attempts=1, started_at=1, worker=100, lease_expires_at=2 WHERE id=?", (b,)
    )
    conn.execute("UPDATE jobs SET state='succeeded', result='null', finished_at=1 WHERE id IN (?, ?, ?, ?)", (c, d, e, f))
    conn.execute("DELETE FROM job_counts")  # the store counts claims itself: recount
    conn.execute("INSERT INTO job_counts(queue, state, n) SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")
    conn.commit()
    conn.close()
    soak = chaos.Chaos(db, run_dir, 1, 1.0, chaos.random.Random(0))
    code = chaos.report(soak, ids, tokens, log, timed_out=False)
    out = capsys.readouterr().out
    assert code == 1, out
    assert figure(out, "lost") == "2", out  # a (missing) and c (succeeded, never ran)
    assert figure(out, "stuck") == "1", out
    assert figure(out, "succeeded") == "3/6", out
    assert figure(out, "duplicates") == "1", out
    assert figure(out, "duplicates unexplained") == "1", out
    assert figure(out, "integrity") == "ok", out
    assert "FAIL (lost, stuck)" in figure(out, "result"), out


def import_chaos() -> Any:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import chaos  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return chaos


@pytest.mark.timeout(60)
def test_chaos_integrity_can_fail(any_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The integrity check on each backend: a running job with no owner and a succeeded job
    carrying an error break the row rules, and the exit status says so."""
    chaos = import_chaos()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = run_dir / "tokens.log"
    q = jobq.Queue(any_db)
    ids = [j.id for j in q.submit_many("tests.tasks:record", [(str(log), "x")] * 3)]
    tokens = {job_id: f"t{i}" for i, job_id in enumerate(ids)}
    log.write_text("".join(f"t{i} {job_id} 1 100 99\n" for i, job_id in enumerate(ids)))
    q.store.close()
    a, b, c = ids
    sql(any_db, "UPDATE jobs SET state='running', attempts=1, started_at=1, lease_expires_at=2 WHERE id=?", (a,))
    sql(any_db, "UPDATE jobs SET state='succeeded', result='1', finished_at=1, error='{}' WHERE id IN (?, ?)", (b, c))
    soak = chaos.Chaos(any_db, run_dir, 1, 1.0, chaos.random.Random(0))
    code = chaos.report(soak, ids, tokens, log, timed_out=False)
    out = capsys.readouterr().out
    assert code == 1, out
    integrity = figure(out, "integrity")
    assert integrity.startswith("FAIL: "), out
    assert f"running without owner/lease/start/worker or attempt: 1 (ids {a})" in integrity, out
    assert f"succeeded without a result or with an error: 2 (ids {b}, {c})" in integrity, out
    backend = "postgresql" if any_db.startswith("postgresql://") else "sqlite"
    assert figure(out, f"integrity checked ({backend})"), out
    assert "integrity" in figure(out, "result"), out
