"""The `jobq` command line, run as real subprocesses against real SQLite files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import jobq
from tests.conftest import REPO, _env, run_cli, wait_for

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
RECORD_FIELDS = {
    "id",
    "name",
    "target",
    "args",
    "kwargs",
    "queue",
    "priority",
    "state",
    "attempts",
    "result",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "supervisor",
    "worker",
}


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def submit(db: str, *args: str) -> int:
    out = ok(run_cli(db, "submit", *args))
    assert out.strip().isdigit(), out
    assert out == out.strip() + "\n", repr(out)  # the id alone on stdout
    return int(out)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2, nothing on stdout, exactly one non-empty line on stderr, no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


def count(db: str) -> int:
    return jobq.Queue(db).store.count_jobs()


def drain(db: str, concurrency: int = 2) -> None:
    assert jobq.Supervisor(jobq.Queue(db), concurrency=concurrency, burst=True).run() == 0


def jobq_cmd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m jobq ARGS` without run_cli's --db, for the env/config lookups."""
    full_env = _env()
    full_env.pop("JOBQ_DB", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args], cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=60
    )


# -- submit ----------------------------------------------------------------------------
def test_submit_prints_id_and_stores_job(db_path: str) -> None:
    first = submit(db_path, "tests.tasks:add", "1", "2")
    second = submit(db_path, "tests.tasks:add", "3")
    assert second != first
    q = jobq.Queue(db_path)
    assert q.record(first).args == [1, 2]
    assert q.get(str(first)).state == "queued"
    # The id is taken back exactly as printed.
    rec = json.loads(ok(run_cli(db_path, "status", str(first), "--json")))
    assert rec["id"] == first


def test_submit_arg_parsing(db_path: str) -> None:
    job_id = submit(
        db_path, "tests.tasks:echo", "1", '"x"', "word", "[1, 2]", '{"a": 1}', "null", "true", "1.5", "--", "-3", "two words"
    )
    rec = jobq.Queue(db_path).record(job_id)
    assert rec.args == [1, "x", "word", [1, 2], {"a": 1}, None, True, 1.5, -3, "two words"]
    assert rec.kwargs == {}


def test_submit_options(db_path: str) -> None:
    job_id = submit(
        db_path,
        "tests.tasks:echo",
        "7",
        "--kwargs",
        '{"k": [1, {"n": null}]}',
        "--queue",
        "emails",
        "--priority",
        "-4",
        "--name",
        "nightly report",
    )
    rec = jobq.Queue(db_path).record(job_id).to_dict()
    assert rec["args"] == [7]
    assert rec["kwargs"] == {"k": [1, {"n": None}]}
    assert rec["queue"] == "emails"
    assert rec["priority"] == -4
    assert rec["name"] == "nightly report"
    assert rec["state"] == "queued"


def test_submit_no_check(db_path: str) -> None:
    proc = run_cli(db_path, "submit", "no_such_pkg_xyz.mod:fn")
    assert_one_line_error(proc, "target")
    assert count(db_path) == 0
    job_id = submit(db_path, "--no-check", "no_such_pkg_xyz.mod:fn")
    assert jobq.Queue(db_path).record(job_id).target == "no_such_pkg_xyz.mod:fn"
    assert count(db_path) == 1
    # --no-check skips the import, not the format check.
    assert_one_line_error(run_cli(db_path, "submit", "--no-check", "not a target"), "target")
    assert count(db_path) == 1


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("not-a-target",), "target"),
        (("tests.tasks:add:x", "1"), "target"),
        (("tests.tasks:add", "--queue", "bad queue"), "queue"),
        (("tests.tasks:add", "--queue", "q" * 65), "queue"),
        (("tests.tasks:add", "--priority", "high"), "priority"),
        (("tests.tasks:add", "--priority", "1.5"), "priority"),
        (("tests.tasks:add", "--kwargs", "{bad json"), "kwargs"),
        (("tests.tasks:add", "--kwargs", "[1, 2]"), "kwargs"),
    ],
)
def test_submit_bad_input_exits_2_with_one_line(db_path: str, args: tuple[str, ...], field: str) -> None:
    jobq.Queue(db_path).submit("tests.tasks:add", args=(1,))
    assert_one_line_error(run_cli(db_path, "submit", *args), field)
    assert count(db_path) == 1


@pytest.mark.parametrize(
    ("command", "bad_id"), [("result", "424242"), ("status", "424242"), ("logs", "424242"), ("result", "abc")]
)
def test_unknown_job_id_exits_2(db_path: str, command: str, bad_id: str) -> None:
    jobq.Queue(db_path).submit("tests.tasks:add", args=(1,))
    assert_one_line_error(run_cli(db_path, command, bad_id), bad_id)


def test_submit_file_bulk(db_path: str, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("[1, 2]\n[10, 20]\n\n[100]\n")
    out = ok(run_cli(db_path, "submit", "tests.tasks:add", "--file", str(jobs)))
    ids = [int(line) for line in out.splitlines()]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert count(db_path) == 3
    drain(db_path)
    q = jobq.Queue(db_path)
    assert [q.get(str(i)).join(timeout=5) for i in ids] == [3, 30, 101]


def test_submit_file_bad_line_adds_nothing(db_path: str, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("[1, 2]\nnot json\n[3]\n")
    proc = run_cli(db_path, "submit", "tests.tasks:add", "--file", str(jobs))
    assert_one_line_error(proc)
    assert count(db_path) == 0


# -- worker and results ----------------------------------------------------------------
@pytest.mark.timeout(90)
def test_worker_burst_drains_then_exits_0(db_path: str, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f"[{i}, {i}]\n" for i in range(30)))
    ids = [int(x) for x in ok(run_cli(db_path, "submit", "tests.tasks:add", "--file", str(jobs))).split()]
    proc = run_cli(db_path, "worker", "start", "--burst", "-c", "2", timeout=80)
    assert proc.returncode == 0, proc.stderr
    q = jobq.Queue(db_path)
    status = q.status()
    assert status["counts"]["succeeded"] == 30
    assert status["counts"]["queued"] == status["counts"]["running"] == 0
    assert status["supervisors"] == []
    assert [q.get(i).join(timeout=5) for i in ids] == [2 * i for i in range(30)]


@pytest.mark.timeout(60)
def test_result_exit_codes(db_path: str) -> None:
    q = jobq.Queue(db_path)
    good = q.submit("tests.tasks:add", args=(40, 2)).id
    bad = q.submit("tests.tasks:fail", args=("cli-boom",)).id
    echo = q.submit("tests.tasks:echo", args=("a",), kwargs={"b": 1}).id
    drain(db_path, concurrency=1)
    proc = run_cli(db_path, "result", str(good))
    assert proc.returncode == 0 and json.loads(proc.stdout) == 42
    assert json.loads(ok(run_cli(db_path, "result", str(echo)))) == {"args": ["a"], "kwargs": {"b": 1}}
    proc = run_cli(db_path, "result", str(bad))
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    assert "ValueError" in proc.stderr and "cli-boom" in proc.stderr
    assert "Traceback" in proc.stderr or "in fail" in proc.stderr  # the remote traceback is shown


def test_result_unfinished_exits_3(db_path: str) -> None:
    job_id = jobq.Queue(db_path).submit("tests.tasks:add", args=(1,)).id
    proc = run_cli(db_path, "result", str(job_id))
    assert proc.returncode == 3, proc
    assert proc.stdout == ""
    proc = run_cli(db_path, "result", str(job_id), "--wait", "--timeout", "0.5")
    assert proc.returncode == 3, proc
    assert proc.stdout == ""
    assert jobq.Queue(db_path).get(job_id).state == "queued"


@pytest.mark.timeout(90)
def test_submit_wait_prints_result(db_path: str, processes) -> None:
    waiter = subprocess.Popen(
        [sys.executable, "-m", "jobq", "--db", db_path, "submit", "--wait", "tests.tasks:add", "20", "3"],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: count(db_path) == 1, timeout=30, what="job submitted")
        processes.supervisor(db_path, "--burst", "-c", "1")
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    lines = out.split()
    assert len(lines) == 2, out  # the id, then the result
    job_id = int(lines[0])
    assert json.loads(lines[1]) == 23
    assert jobq.Queue(db_path).get(job_id).state == "succeeded"


@pytest.mark.timeout(60)
def test_submit_wait_failed_exits_1(db_path: str, processes) -> None:
    processes.supervisor(db_path, "-c", "1")
    proc = run_cli(db_path, "submit", "--wait", "tests.tasks:fail", "waited-boom", timeout=50)
    assert proc.returncode == 1, proc
    assert "waited-boom" in proc.stderr
    assert proc.stdout.strip().isdigit()


# -- status, list, logs ----------------------------------------------------------------
@pytest.mark.timeout(60)
def test_status_json(db_path: str) -> None:
    empty = json.loads(ok(run_cli(db_path, "status", "--json")))
    assert set(empty) >= {"counts", "queues", "supervisors"}
    assert all(empty["counts"][s] == 0 for s in STATES)
    assert empty["supervisors"] == []
    q = jobq.Queue(db_path)
    q.submit("tests.tasks:add", args=(1,))
    q.submit("tests.tasks:fail")
    drain(db_path, concurrency=1)
    q.submit("tests.tasks:add", args=(1,), queue="later")
    status = json.loads(ok(run_cli(db_path, "status", "--json")))
    assert {s: status["counts"][s] for s in STATES} == {
        "queued": 1,
        "running": 0,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    assert set(status["queues"]) == {"default", "later"}
    for counts in status["queues"].values():
        assert all(s in counts for s in STATES)
    assert status["queues"]["later"]["queued"] == 1
    assert status["queues"]["later"]["succeeded"] == 0
    assert status["queues"]["default"]["failed"] == 1
    text = ok(run_cli(db_path, "status"))
    assert "default" in text and "later" in text


@pytest.mark.timeout(60)
def test_status_lists_live_supervisor(db_path: str, processes) -> None:
    proc = processes.supervisor(db_path, "-c", "2")

    q = jobq.Queue(db_path)
    wait_for(lambda: q.status()["supervisors"], timeout=40, interval=0.1, what="supervisor registered")
    sups = json.loads(ok(run_cli(db_path, "status", "--json")))["supervisors"]
    assert len(sups) == 1
    assert sups[0]["pid"] == proc.pid
    assert sups[0]["concurrency"] == 2
    assert "host" in sups[0] and "heartbeat_at" in sups[0]


@pytest.mark.timeout(60)
def test_status_id_json_record(db_path: str) -> None:
    job_id = jobq.Queue(db_path).submit("tests.tasks:add", args=(2,), name="adder", priority=3).id
    drain(db_path, concurrency=1)
    rec = json.loads(ok(run_cli(db_path, "status", str(job_id), "--json")))
    assert rec["id"] == job_id
    assert rec["name"] == "adder"
    assert rec["target"] == "tests.tasks:add"
    assert rec["args"] == [2] and rec["kwargs"] == {}
    assert rec["queue"] == "default" and rec["priority"] == 3
    assert rec["state"] == "succeeded" and rec["attempts"] == 1
    assert rec["result"] == 3 and rec["error"] is None
    assert rec["created_at"] and rec["started_at"] and rec["finished_at"]
    assert rec["supervisor"] and isinstance(rec["worker"], int)
    text = ok(run_cli(db_path, "status", str(job_id)))
    assert "succeeded" in text and "tests.tasks:add" in text


@pytest.mark.timeout(60)
def test_list_table_and_json(db_path: str) -> None:
    q = jobq.Queue(db_path)
    good = [q.submit("tests.tasks:add", args=(i,)).id for i in range(3)]
    failed = [q.submit("tests.tasks:fail", args=(f"f{i}",)).id for i in range(7)]
    drain(db_path)
    queued = q.submit("tests.tasks:add", args=(1,), queue="other", name="lonely").id
    table = ok(run_cli(db_path, "list"))
    for job_id in [*good, *failed, queued]:
        assert str(job_id) in table
    assert "lonely" in table
    lines = ok(run_cli(db_path, "list", "--json", "--state", "failed", "--limit", "5")).splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 5
    assert all(r["state"] == "failed" for r in rows)
    assert [r["id"] for r in rows] == sorted(failed, reverse=True)[:5]  # newest first
    assert RECORD_FIELDS <= set(rows[0])
    rows = [json.loads(line) for line in ok(run_cli(db_path, "list", "--json", "--queue", "other")).splitlines()]
    assert [r["id"] for r in rows] == [queued]
    proc = run_cli(db_path, "list", "--state", "bogus")
    assert proc.returncode == 2


@pytest.mark.timeout(60)
def test_logs(db_path: str) -> None:
    job_id = jobq.Queue(db_path).submit("tests.tasks:shout", args=(3,)).id
    ok(run_cli(db_path, "worker", "start", "--burst", "-c", "1"))
    out = ok(run_cli(db_path, "logs", str(job_id)))
    assert "Worker: 3" in out
    assert "to stderr 3" in out


# -- configuration ---------------------------------------------------------------------
def test_db_from_env(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    proc = jobq_cmd("submit", "tests.tasks:add", "5", env={"JOBQ_DB": str(db)}, cwd=tmp_path)
    job_id = int(ok(proc))
    assert db.is_file()
    assert not (tmp_path / "jobq.db").exists()
    assert jobq.Queue(str(db)).record(job_id).args == [5]
    # --db wins over the environment.
    other = tmp_path / "flag.db"
    ok(jobq_cmd("--db", str(other), "submit", "tests.tasks:add", "6", env={"JOBQ_DB": str(db)}, cwd=tmp_path))
    assert jobq.Queue(str(other)).store.count_jobs() == 1
    assert jobq.Queue(str(db)).store.count_jobs() == 1


def test_db_from_config_file(tmp_path: Path) -> None:
    db = tmp_path / "from-config.db"
    config = tmp_path / "conf.toml"
    config.write_text(f'db = "{db}"\n')
    ok(jobq_cmd("--config", str(config), "submit", "tests.tasks:add", "1", cwd=tmp_path))
    assert jobq.Queue(str(db)).store.count_jobs() == 1
    # JOBQ_DB beats the config file.
    env_db = tmp_path / "env.db"
    ok(jobq_cmd("--config", str(config), "submit", "tests.tasks:add", "1", env={"JOBQ_DB": str(env_db)}, cwd=tmp_path))
    assert jobq.Queue(str(env_db)).store.count_jobs() == 1
    assert jobq.Queue(str(db)).store.count_jobs() == 1


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('heartbeat_seconds = "soon"\n', "heartbeat_seconds"),
        ("max_payload_bytes = 0\n", "max_payload_bytes"),
    ],
)
def test_config_bad_value_exits_2_naming_key(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    db = tmp_path / "c.db"
    proc = jobq_cmd("--db", str(db), "--config", str(config), "submit", "tests.tasks:add", "1", cwd=tmp_path)
    assert_one_line_error(proc, key)
    assert not db.exists() or jobq.Queue(str(db)).store.count_jobs() == 0
