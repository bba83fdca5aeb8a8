"""Issue 4 (workflows) from the shell and across supervisors: schedules on two supervisors,
``submit --map``/``wait``, ``--key``, ``--after``, ``--delay``/``--at``, queue concurrency
limits, ``purge``, ``queues`` and ``schedules``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pytest

import jobq
from jobq.core.errors import JobNotFound
from tests.conftest import REPO, Processes, _env, run_cli, wait_for

ADD = "tests.tasks:add"


def supervisor_with_config(processes: Processes, db: str, config: Path, *args: str) -> subprocess.Popen[str]:
    """Like ``processes.supervisor`` but with ``--config`` (a group option, before the command)."""
    log = processes.tmp_path / f"supervisor-{len(processes.procs)}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobq", "--db", db, "--config", str(config), "worker", "start", *args],
            cwd=REPO,
            env=_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    proc.log_path = log  # type: ignore[attr-defined]
    processes.procs.append(proc)
    return proc


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def spans(path: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for line in path.read_text().splitlines():
        token, start, end = line.split()
        out[token] = (float(start), float(end))
    return out


# -- periodic jobs ------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_every_second_schedule_on_two_supervisors_runs_once_per_tick(db_path: str, tmp_path: Path, processes) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "jobq.toml"
    config.write_text('[[schedules]]\nname = "tick"\ntarget = "tests.tasks:add"\nargs = [1, 2]\nevery = "1s"\n')
    q = jobq.Queue(db_path, config=str(config))
    for _ in range(2):
        supervisor_with_config(processes, db_path, config, "-c", "1")
    wait_for(lambda: len(q.live_supervisors()) == 2, 30, what="two supervisors")
    wait_for(lambda: any(j.name == "tick" for j in q.list(limit=5)), 30, what="the first run")
    start = time.time()
    window = 5.0
    # A measurement window, not a hope: both supervisors enqueue whatever is due meanwhile.
    wait_for(lambda: time.time() > start + window + 1, 30, what="the window to pass")
    runs = [j for j in q.list(limit=1000) if j.name == "tick" and start <= j.created_at < start + window]
    assert 3 <= len(runs) <= 7, f"{len(runs)} runs in {window:g}s on two supervisors (expected about 5, not 10)"
    assert all(j.target == ADD and j.args == [1, 2] for j in runs)
    wait_for(lambda: q.get(runs[0].id).state == "succeeded", 30, what="a run to finish")
    assert [s.name for s in q.schedules()] == ["tick"]


def test_schedules_command_lists_schedules(db_path: str, tmp_path: Path) -> None:
    q = jobq.Queue(db_path)
    q.schedule("nightly", ADD, args=(1, 2), cron="0 3 * * *")
    q.schedule("often", "tests.tasks:square", args=(3,), every="30s")
    out = run_cli(db_path, "schedules")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "nightly" in text and "0 3 * * *" in text and ADD in text
    assert "often" in text and "30s" in text and "tests.tasks:square" in text
    out = run_cli(db_path, "schedules", "--json")
    rows = {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows["nightly"]["cron"] == "0 3 * * *" and rows["nightly"]["args"] == [1, 2]
    assert rows["often"]["every"] == 30 and rows["often"]["next_run_at"]
    assert rows["nightly"]["next_run_at"].startswith(tuple("0123456789"))
    assert "T03:00:00" in rows["nightly"]["next_run_at"]  # cron is read in UTC


def test_schedules_command_lists_schedules_declared_in_the_config(db_path: str, tmp_path: Path) -> None:
    config = tmp_path / "jobq.toml"
    config.write_text('[[schedules]]\nname = "from-config"\ntarget = "tests.tasks:add"\ncron = "*/5 * * * *"\n')
    out = run_cli(db_path, "--config", str(config), "schedules")
    assert out.returncode == 0, out.stderr
    assert "from-config" in out.stdout and "*/5 * * * *" in out.stdout


# -- map from the shell, and wait ---------------------------------------------------------
@pytest.mark.timeout(90)
def test_submit_map_prints_group_id_and_wait_prints_plain_progress(db_path: str, tmp_path: Path, processes) -> None:  # type: ignore[no-untyped-def]
    items = tmp_path / "items.jsonl"
    # A JSON array is the argument list; any other value is the single argument.
    items.write_text("".join(json.dumps([i, 10]) + "\n" for i in range(50)) + "5\n\n")
    out = run_cli(db_path, "submit", ADD, "--map", str(items))
    assert out.returncode == 0, out.stderr
    group_id = out.stdout.strip()
    assert group_id.startswith("g") and group_id[1:].isdigit(), out.stdout
    q = jobq.Queue(db_path)
    group = q.group(group_id)
    assert len(group) == 51
    processes.supervisor(db_path, "-c", "2")
    out = run_cli(db_path, "wait", group_id, "--timeout", "60", timeout=90)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr and "\033" not in out.stderr  # not a terminal: plain lines
    progress = [line for line in out.stderr.splitlines() if group_id in line]
    assert progress and "51/51" in progress[-1], out.stderr
    assert group.join(timeout=5) == [i + 10 for i in range(50)] + [6]
    # A group with a failed item: wait exits 1 and says so.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('[1, 2]\n["a", 1]\n')
    bad_id = run_cli(db_path, "submit", ADD, "--map", str(bad)).stdout.strip()
    out = run_cli(db_path, "wait", bad_id, "--timeout", "60", timeout=90)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "failed" in out.stderr


def test_wait_on_unknown_group_exits_2(db_path: str) -> None:
    jobq.Queue(db_path)
    out = run_cli(db_path, "wait", "g424242")
    assert out.returncode == 2, (out.stdout, out.stderr)


# -- unique keys, dependencies and delays from the shell ---------------------------------
def test_cli_duplicate_key_prints_existing_id(db_path: str) -> None:
    out = run_cli(db_path, "submit", ADD, "1", "2", "--key", "nightly-report")
    assert out.returncode == 0, out.stderr
    first = out.stdout.strip()
    out = run_cli(db_path, "submit", ADD, "3", "4", "--key", "nightly-report")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == first
    assert first in out.stderr and "nightly-report" in out.stderr
    q = jobq.Queue(db_path)
    assert q.store.count_jobs() == 1
    out = run_cli(db_path, "submit", ADD, "3", "4", "--key", "nightly-report", "--json")
    assert json.loads(out.stdout) == {"id": int(first), "existing": True}


def test_cli_after_rejects_unknown_dependency(db_path: str) -> None:
    first = run_cli(db_path, "submit", ADD, "1").stdout.strip()
    out = run_cli(db_path, "submit", ADD, "2", "--after", first, "--after", "999999")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "999999" in out.stderr
    q = jobq.Queue(db_path)
    assert q.store.count_jobs() == 1
    out = run_cli(db_path, "submit", ADD, "2", "--after", first)
    assert out.returncode == 0, out.stderr
    assert q.record(out.stdout.strip()).state == "waiting"
    assert q.record(out.stdout.strip()).depends_on == [int(first)]


def test_cli_delay_and_at(db_path: str) -> None:
    out = run_cli(db_path, "submit", ADD, "1", "--delay", "5m")
    assert out.returncode == 0, out.stderr
    q = jobq.Queue(db_path)
    record = q.record(out.stdout.strip())
    assert record.state == "scheduled"
    assert 290 < record.run_at - record.created_at < 310
    out = run_cli(db_path, "submit", ADD, "1", "--at", "2099-01-01T09:00:00+00:00")
    assert out.returncode == 0, out.stderr
    assert q.record(out.stdout.strip()).run_at == 4070941200.0
    out = run_cli(db_path, "submit", ADD, "1", "--at", "2099-01-01T09:00:00")  # naive: rejected
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert q.store.count_jobs() == 2


# -- queue limits -------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_queue_concurrency_limit_holds_across_supervisors(db_path: str, tmp_path: Path, processes) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "jobq.toml"
    config.write_text("[queues.serial]\nconcurrency = 1\n")
    q = jobq.Queue(db_path, config=str(config))
    side = tmp_path / "spans.txt"
    serial = [q.submit("tests.tasks:span", (str(side), f"s{i}", 0.4), queue="serial") for i in range(5)]
    other = [q.submit("tests.tasks:span", (str(side), f"o{i}", 0.8), queue="other") for i in range(4)]
    for _ in range(2):
        supervisor_with_config(processes, db_path, config, "-c", "2")
    for job in serial + other:
        job.join(timeout=60)
    times = spans(side)
    serial_spans = [times[f"s{i}"] for i in range(5)]
    other_spans = [times[f"o{i}"] for i in range(4)]
    for a, b in combinations(serial_spans, 2):
        assert not overlap(a, b), f"two 'serial' jobs ran at once: {a} {b}"
    # Meanwhile the other queue is not held back: its jobs run beside the serial ones and
    # beside each other.
    assert any(overlap(o, s) for o in other_spans for s in serial_spans), times
    assert any(overlap(a, b) for a, b in combinations(other_spans, 2)), times
    assert len({q.record(j.id).owner for j in serial}) >= 1


# -- retention and queues from the shell --------------------------------------------------
@pytest.mark.timeout(60)
def test_purge_command(db_path: str, processes) -> None:  # type: ignore[no-untyped-def]
    q = jobq.Queue(db_path)
    ok = q.submit(ADD, (1,), queue="run")
    bad = q.submit("tests.tasks:fail", queue="run")
    cancelled = q.submit(ADD, (1,), queue="hold")
    cancelled.cancel()
    queued = q.submit(ADD, (1,), queue="hold")
    scheduled = q.submit(ADD, (1,), queue="hold", delay="1h")
    waiting = q.submit(ADD, (1,), queue="hold", depends_on=[queued])
    sup = processes.supervisor(db_path, "-c", "1", "-q", "run", "--burst")
    assert sup.wait(timeout=45) == 0
    assert (ok.state, bad.state) == ("succeeded", "failed")
    out = run_cli(db_path, "purge", "--state", "failed", "--older-than", "0s")
    assert out.returncode == 0 and out.stdout.startswith("1 "), (out.stdout, out.stderr)
    with pytest.raises(JobNotFound):
        q.get(bad.id)
    assert ok.state == "succeeded"
    out = run_cli(db_path, "purge", "--older-than", "0s")
    assert out.returncode == 0 and out.stdout.startswith("2 "), (out.stdout, out.stderr)
    for job in (ok, cancelled):
        with pytest.raises(JobNotFound):
            q.get(job.id)
    assert [j.state for j in (queued, scheduled, waiting)] == ["queued", "scheduled", "waiting"]


def test_queues_json_lists_configured_queues_with_settings_and_counts(db_path: str, tmp_path: Path) -> None:
    config = tmp_path / "jobq.toml"
    config.write_text('[queues.serial]\nconcurrency = 1\n\n[queues.slow]\ntimeout = "30s"\nretries = 2\npriority = 5\n')
    q = jobq.Queue(db_path, config=str(config))
    q.submit(ADD, (1,), queue="serial")
    q.submit(ADD, (1,), queue="serial", delay="1h")
    q.submit(ADD, (1,), queue="adhoc")
    slow = q.submit(ADD, (1,), queue="slow")
    record = q.record(slow.id)  # the queue's defaults apply to its jobs
    assert (record.timeout, record.max_attempts, record.priority) == (30.0, 3, 5)
    out = run_cli(db_path, "--config", str(config), "queues", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["queue"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert set(rows) == {"serial", "slow", "adhoc"}
    assert rows["serial"]["settings"]["concurrency"] == 1
    assert rows["serial"]["counts"]["queued"] == 1 and rows["serial"]["counts"]["scheduled"] == 1
    assert rows["slow"]["settings"]["timeout"] == 30.0
    assert rows["slow"]["settings"]["retries"] == 2 and rows["slow"]["settings"]["priority"] == 5
    assert rows["slow"]["counts"]["queued"] == 1
    assert rows["adhoc"]["counts"]["queued"] == 1
    out = run_cli(db_path, "--config", str(config), "queues")
    assert out.returncode == 0, out.stderr
    assert "serial" in out.stdout and "concurrency" in out.stdout
