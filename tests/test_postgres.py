"""The PostgreSQL backend (issue 6) with real processes: many supervisors on one database,
leases across a frozen (SIGSTOP) supervisor, SIGKILL, LISTEN/NOTIFY wake-ups, the CLI on a
PostgreSQL URL, and the errors a user meets without psycopg or without a server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import jobq
from tests.conftest import REPO, _env, run_cli, wait_for

pytestmark = pytest.mark.timeout(120)


HOSTS = ("host-a", "host-b", "host-c")


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def live_ids(q: jobq.Queue) -> list[str]:
    return [s["id"] for s in q.status()["supervisors"]]


def log_of(proc: subprocess.Popen[str]) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


# -- many supervisors ------------------------------------------------------------------------
@pytest.mark.timeout(150)
def test_three_supervisors_on_three_hosts_run_5000_jobs_exactly_once(
    pg_url: str, processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    side = tmp_path / "executions.txt"
    procs = []
    for host in HOSTS:
        monkeypatch.setenv("JOBQ_HOST_ID", host)  # three "hosts" on this one machine
        procs.append(processes.supervisor(pg_url, "-c", "2", log_name=f"{host}.log"))
    monkeypatch.delenv("JOBQ_HOST_ID")
    q = jobq.Queue(pg_url)
    sups = wait_for(lambda: len(s := q.status()["supervisors"]) == 3 and s, timeout=60, what="three supervisors")
    sup_ids = [s["id"] for s in sups]
    assert len(set(sup_ids)) == 3
    assert sorted(s["host"] for s in sups) == sorted(HOSTS)
    assert {s["pid"] for s in sups} == {p.pid for p in procs}

    jobs = q.submit_many("tests.tasks:record", [(str(side), f"t{i}") for i in range(5000)])
    assert len(jobs) == 5000
    wait_for(lambda: q.status()["counts"]["succeeded"] == 5000, timeout=120, interval=0.5, what="5000 jobs to succeed")

    runs = Counter(lines(side))
    assert len(runs) == 5000 and set(runs.values()) == {1}, [t for t, n in runs.items() if n != 1][:10]
    assert nonzero(q.status()["counts"]) == {"succeeded": 5000}
    owners = Counter(r.owner for r in q.store.list_jobs("succeeded", None, 10_000))
    assert set(owners) == set(sup_ids), owners  # every supervisor took part, and only they did
    assert all(p.poll() is None for p in procs)


# -- a supervisor that comes back after its lease ran out -----------------------------------
def test_frozen_supervisor_loses_its_job_and_its_late_finish_is_rejected(
    pg_url: str, processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQ_LEASE_SECONDS", "2")
    monkeypatch.setenv("JOBQ_HEARTBEAT_SECONDS", "0.5")
    q = jobq.Queue(pg_url)
    side = tmp_path / "starts.txt"
    job = q.submit("tests.tasks:attempt_number", args=(str(side), 4))
    frozen = processes.supervisor(pg_url, "-c", "1", log_name="frozen.log")
    wait_for(lambda: "start 1" in lines(side), timeout=40, what="attempt 1 to start")
    frozen_id = q.record(job.id).owner
    assert frozen_id

    os.killpg(frozen.pid, signal.SIGSTOP)  # a paused VM: the supervisor and its worker
    frozen_at = time.time()
    try:
        rescuer = processes.supervisor(pg_url, "-c", "1", log_name="rescuer.log")
        done = wait_for(lambda: (r := q.record(job.id)).state == "succeeded" and r, timeout=40, what="attempt 2 to succeed")
        # Frozen well past twice its lease, as a paused VM would be: long enough to be forgotten.
        wait_for(lambda: time.time() > frozen_at + 5, timeout=20, interval=0.1, what="the freeze to outlast the lease")
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    assert done.result == 2 and done.attempts == 2 and done.owner not in (None, frozen_id)
    assert (done.errors[0]["attempt"], done.errors[0]["type"]) == (1, "LeaseExpired")
    rescuer_id = done.owner

    # Back from the freeze, attempt 1 ends (returning 1): its finish is refused and logged.
    pattern = re.compile(rf"\b{job.id}\b.*(dropped|rejected)", re.IGNORECASE)
    wait_for(lambda: pattern.search(log_of(frozen)), timeout=40, what="the frozen supervisor to drop its late result")
    after = q.record(job.id)
    assert (after.state, after.result, after.attempts, after.owner) == ("succeeded", 2, 2, rescuer_id)
    assert lines(side).count("start 1") == 1 and lines(side).count("start 2") == 1
    assert frozen.poll() is None, log_of(frozen)

    # ...and it goes on: listed as live again, and claiming once it is the only one left.
    wait_for(lambda: frozen_id in live_ids(q), timeout=20, what="the thawed supervisor to be listed again")
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(timeout=40) == 0
    nxt = q.submit("tests.tasks:add", args=(1, 2))
    assert nxt.join(timeout=30) == 3
    assert q.record(nxt.id).owner == frozen_id


# -- SIGKILL ---------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["same host", "other host"])
def test_sigkill_of_a_supervisor_loses_nothing(
    where: str, pg_url: str, processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same host: the dead supervisor's lock file tells at once. Other host: only its lease
    running out does (short leases here)."""
    if where == "other host":
        monkeypatch.setenv("JOBQ_LEASE_SECONDS", "2")
        monkeypatch.setenv("JOBQ_HEARTBEAT_SECONDS", "0.5")
        monkeypatch.setenv("JOBQ_HOST_ID", "host-victim")
    q = jobq.Queue(pg_url)
    side = tmp_path / "runs.txt"
    jobs = [q.submit("tests.tasks:record_then_sleep", args=(str(side), f"t{i}", 1.0)) for i in range(8)]
    victim = processes.supervisor(pg_url, "-c", "2", log_name="victim.log")
    if where == "other host":
        monkeypatch.setenv("JOBQ_HOST_ID", "host-successor")
    wait_for(lambda: len(lines(side)) >= 2, timeout=40, what="two jobs to start")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    counts = nonzero(q.status()["counts"])
    assert counts.get("running", 0) + counts.get("claimed", 0) >= 1  # held by the dead supervisor

    processes.supervisor(pg_url, "-c", "2", log_name="successor.log")
    assert [j.join(timeout=60) for j in jobs] == [f"t{i}" for i in range(8)]
    assert nonzero(q.status()["counts"]) == {"succeeded": 8}
    assert set(lines(side)) == {f"t{i}" for i in range(8)}
    lost = [q.record(j.id) for j in jobs if q.record(j.id).errors]
    assert lost and all(r.errors[0]["type"] == ("LeaseExpired" if where == "other host" else "SupervisorLost") for r in lost)


# -- LISTEN/NOTIFY ---------------------------------------------------------------------------
def test_an_idle_supervisor_is_woken_by_notify(pg_url: str, processes, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing but a notification can wake this supervisor for 30 s: no poll, no heartbeat.
    monkeypatch.setenv("JOBQ_IDLE_POLL_SECONDS", "30")
    monkeypatch.setenv("JOBQ_HEARTBEAT_SECONDS", "30")
    monkeypatch.setenv("JOBQ_LEASE_SECONDS", "90")
    q = jobq.Queue(pg_url)
    warm = q.submit("tests.tasks:add", args=(0, 0))
    processes.supervisor(pg_url, "-c", "1")
    assert warm.join(timeout=40) == 0
    idle_since = time.time()
    # The idle back-off doubles from 1 ms: after ~8.2 s idle its next wait is ~8 s long, so a
    # job picked up within 2.5 s of submission was picked up because of the notification.
    wait_for(lambda: time.time() - idle_since > 9.0, timeout=20, interval=0.1, what="the supervisor to settle into idling")
    start = time.monotonic()
    job = q.submit("tests.tasks:add", args=(2, 3))
    assert job.join(timeout=10) == 5
    assert time.monotonic() - start < 2.5


# -- CLI and configuration -------------------------------------------------------------------
def test_cli_end_to_end_on_a_postgresql_url(pg_url: str) -> None:
    ok = run_cli(pg_url, "submit", "tests.tasks:add", "2", "3")
    assert ok.returncode == 0, ok.stderr
    ok_id = ok.stdout.strip()
    bad = run_cli(pg_url, "submit", "tests.tasks:fail", "nope")
    assert bad.returncode == 0, bad.stderr
    bad_id = bad.stdout.strip()
    assert run_cli(pg_url, "result", ok_id).returncode == 3  # not run yet

    burst = run_cli(pg_url, "worker", "start", "--burst", "-c", "1", timeout=90)
    assert burst.returncode == 0, burst.stderr

    res = run_cli(pg_url, "result", ok_id)
    assert (res.returncode, res.stdout.strip()) == (0, "5"), res.stderr
    res = run_cli(pg_url, "result", bad_id)
    assert res.returncode == 1 and "nope" in res.stderr
    status = run_cli(pg_url, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert nonzero(data["counts"]) == {"succeeded": 1, "failed": 1}
    assert nonzero(data["queues"]["default"]) == {"succeeded": 1, "failed": 1}
    assert set(data["counts"]) == set(jobq.STATES) and data["supervisors"] == []
    one = run_cli(pg_url, "status", ok_id, "--json")
    assert one.returncode == 0, one.stderr
    record = json.loads(one.stdout)
    assert (str(record["id"]), record["state"], record["result"], record["args"]) == (ok_id, "succeeded", 5, [2, 3])


def test_jobq_db_environment_selects_postgresql(pg_url: str, tmp_path: Path) -> None:
    env = _env()
    env["JOBQ_DB"] = pg_url
    cmd = [sys.executable, "-m", "jobq"]
    sub = subprocess.run(
        [*cmd, "submit", "tests.tasks:add", "1", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    status = subprocess.run([*cmd, "status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert nonzero(json.loads(status.stdout)["counts"]) == {"queued": 1}
    assert list(tmp_path.iterdir()) == []  # no SQLite file appeared
    assert jobq.Queue(pg_url).get(job_id).state == "queued"


def test_a_job_printing_a_nul_byte_on_postgresql(pg_url: str, processes) -> None:
    q = jobq.Queue(pg_url)
    job = q.submit("tests.tasks:print_nul")
    after = q.submit("tests.tasks:add", args=(1, 1))
    sup = processes.supervisor(pg_url, "-c", "1")
    assert job.join(timeout=20) == "printed"
    assert after.join(timeout=20) == 2
    assert "before" in q.logs(job.id) and "after" in q.logs(job.id)
    assert sup.poll() is None, log_of(sup)


# -- errors a user meets ---------------------------------------------------------------------
def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)


def test_missing_psycopg_says_what_to_install() -> None:
    api = _python("import sys; sys.modules['psycopg'] = None; import jobq; jobq.Queue('postgresql://x@127.0.0.1/test')")
    assert api.returncode != 0
    assert "pip install 'jobq[postgres]'" in api.stderr, api.stderr
    assert "psycopg" in api.stderr.strip().splitlines()[-1]
    cli = _python(
        "import sys; sys.modules['psycopg'] = None; from jobq.cli import main; "
        "main(['--db', 'postgresql://x@127.0.0.1/test', 'status'])"
    )
    assert cli.returncode == 4, cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1 and "pip install 'jobq[postgres]'" in cli.stderr, cli.stderr


@pytest.mark.parametrize("args", [("status",), ("submit", "tests.tasks:add", "1"), ("worker", "start", "--burst", "-c", "1")])
def test_unreachable_server_exits_4_with_one_line(args: tuple[str, ...]) -> None:
    res = run_cli("postgresql://postgres@127.0.0.1:1/test", *args)
    assert res.returncode == 4, (res.returncode, res.stderr)
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "127.0.0.1" in err[0] and ":1" in err[0], err
