"""Running as a service (issue 12): SIGTERM to the whole process group drains, `jobq health`,
systemd's notify protocol read from a real datagram socket, JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import jobq
from jobq.runtime.notify import Notifier
from tests.conftest import run_cli, wait_for


def started(side: Path, token: str) -> bool:
    try:
        return any(line.split()[0] == token for line in side.read_text().splitlines())
    except FileNotFoundError:
        return False


def _signal(sup: subprocess.Popen[str], how: str, sig: int) -> None:
    if how == "group":  # what systemd (KillMode=control-group), tini -g and friends do
        os.killpg(sup.pid, sig)
    else:
        sup.send_signal(sig)


# -- SIGTERM to the process group --------------------------------------------------------------
@pytest.mark.parametrize("how", ["group", "plain"])
def test_sigterm_drains_running_jobs_finish(queue: jobq.Queue, processes, tmp_path: Path, how: str) -> None:
    side = tmp_path / "side.txt"
    sup = processes.supervisor(queue.path, "-c", "2")
    jobs = [queue.submit("tests.tasks:record_then_sleep", args=(str(side), f"run{i}", 2)) for i in range(2)]
    wait_for(lambda: all(started(side, f"run{i}") for i in range(2)), 60, what="both jobs to start")
    waiting = queue.submit("tests.tasks:add", args=(1, 1))
    _signal(sup, how, signal.SIGTERM)
    assert sup.wait(timeout=60) == 0
    log = Path(sup.log_path).read_text()
    for i, job in enumerate(jobs):
        assert job.state == "succeeded", (job.error, log)
        assert job.result == f"run{i}"
        assert job.attempts == 1
    assert "WorkerDied" not in log and "died" not in log, log
    rec = queue.record(waiting.id)
    assert (rec.state, rec.attempts) == ("queued", 0)
    assert queue.status()["counts"]["running"] == 0


@pytest.mark.parametrize("how", ["group", "plain"])
def test_sigterm_past_grace_releases_without_counting(queue: jobq.Queue, processes, tmp_path: Path, how: str) -> None:
    side = tmp_path / "side.txt"
    sup = processes.supervisor(queue.path, "-c", "1", "--grace", "1")
    job = queue.submit("tests.tasks:record_then_sleep", args=(str(side), "long", 60))
    wait_for(lambda: started(side, "long"), 60, what="the job to start")
    _signal(sup, how, signal.SIGTERM)
    assert sup.wait(timeout=30) == 0  # grace 1 s + kill grace, long before the 60 s job ends
    rec = queue.record(job.id)
    assert (rec.state, rec.attempts, rec.errors) == ("queued", 0, [])
    assert "WorkerDied" not in Path(sup.log_path).read_text()


def test_group_sigterm_leaves_timeouts_and_cancels_working(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    """Workers ignore group signals; the supervisor still ends them for a timeout or a cancel."""
    side = tmp_path / "side.txt"
    processes.supervisor(queue.path, "-c", "2")
    slow = queue.submit("tests.tasks:sleep", args=(60,), timeout=1)
    hung = queue.submit("tests.tasks:record_then_sleep", args=(str(side), "hung", 60))
    wait_for(lambda: started(side, "hung"), 60, what="the job to start")
    hung.cancel()
    with pytest.raises(jobq.JobFailed) as timed_out:
        slow.join(timeout=30)
    assert timed_out.value.error_type == "JobTimeout"
    wait_for(lambda: hung.state == "cancelled", 30, what="the cancel")


# -- jobq health --------------------------------------------------------------------------------
def test_health_without_a_supervisor_exits_1_with_the_reason(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")
    out = run_cli(missing, "health")
    assert out.returncode == 1
    assert "no database" in out.stderr
    assert not os.path.exists(missing)  # a health check never creates the database
    jobq.Queue(missing)
    out = run_cli(missing, "health", "--json")
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["healthy"] is False and "no live supervisor" in data["reason"]


def test_health_with_a_supervisor_exits_0_then_1_when_it_stalls(queue: jobq.Queue, processes) -> None:
    sup = processes.supervisor(queue.path, "-c", "1", "-q", "mail", env={"JOBQ_HEARTBEAT_SECONDS": "0.2"})
    wait_for(lambda: queue.live_supervisors(), 30, what="the supervisor to register")
    sup_id = queue.live_supervisors()[0].id
    out = run_cli(queue.path, "health", "--max-age", "5")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(sup_id) and "queues mail" in lines[0]
    assert run_cli(queue.path, "health", "--queue", "mail").returncode == 0
    assert run_cli(queue.path, "health", "--this-host").returncode == 0
    elsewhere = run_cli(queue.path, "health", "--this-host", env={"JOBQ_HOST_ID": "another-host"})
    assert elsewhere.returncode == 1 and "on host another-host" in elsewhere.stderr
    other = run_cli(queue.path, "health", "--queue", "other")
    assert other.returncode == 1 and "queue 'other'" in other.stderr
    data = json.loads(run_cli(queue.path, "health", "--json").stdout)
    assert data["healthy"] is True and [s["id"] for s in data["supervisors"]] == [sup_id]
    # A frozen supervisor still holds its lock but stops beating: unhealthy past --max-age.
    os.kill(sup.pid, signal.SIGSTOP)
    try:
        stale = wait_for(
            lambda: (r := run_cli(queue.path, "health", "--max-age", "1")).returncode == 1 and r,
            20,
            what="health to notice the frozen supervisor",
        )
        assert "heartbeat" in stale.stderr  # type: ignore[attr-defined]
        assert "newest" in stale.stderr  # type: ignore[attr-defined]
    finally:
        os.kill(sup.pid, signal.SIGCONT)
    wait_for(lambda: run_cli(queue.path, "health", "--max-age", "1").returncode == 0, 30, what="a fresh heartbeat")


def test_health_bad_max_age_is_a_usage_error(queue: jobq.Queue) -> None:
    out = run_cli(queue.path, "health", "--max-age", "soon")
    assert out.returncode == 2 and "--max-age" in out.stderr


# -- systemd notify ------------------------------------------------------------------------------
def _datagrams(sock: socket.socket, until: str, timeout: float = 30) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in m for m in got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {until!r} within {timeout}s; got {got}")
        sock.settimeout(left)
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


def test_notifier_speaks_to_path_and_abstract_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    for address, bind in ((path, path), (f"@jobq-test-{uuid.uuid4().hex}", None)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(bind or "\0" + address[1:])
            n = Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"})
            assert n.ready("up") and n.watchdog() and n.stopping()
            msgs = [sock.recv(4096).decode() for _ in range(3)]
            n.close()
        assert msgs[0].splitlines()[0] == "READY=1" and "STATUS=up" in msgs[0]
        assert msgs[1] == "WATCHDOG=1\n" and msgs[2] == "STOPPING=1\n"
    assert Notifier.from_env({}).ready() is False
    # WATCHDOG_PID naming another process: the watchdog is not ours to feed.
    assert Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}).watchdog() is False


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_worker_start_notifies_ready_watchdog_and_stopping(queue: jobq.Queue, processes, tmp_path: Path, kind: str) -> None:
    if kind == "path":
        address = bind = str(tmp_path / "notify.sock")
    else:
        address = f"@jobq-test-{uuid.uuid4().hex}"
        bind = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(bind)
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "5000000", "JOBQ_HEARTBEAT_SECONDS": "0.2"}
        sup = processes.supervisor(queue.path, "-c", "2", env=env)
        got = _datagrams(sock, "READY=1")
        assert len(queue.live_supervisors()) == 1  # registered before it said so
        got += _datagrams(sock, "WATCHDOG=1")
        n_before = sum("WATCHDOG=1" in m for m in got)
        got += _datagrams(sock, "WATCHDOG=1")
        assert sum("WATCHDOG=1" in m for m in got) > n_before
        sup.send_signal(signal.SIGTERM)
        got += _datagrams(sock, "STOPPING=1")
        assert sup.wait(timeout=30) == 0
    ready = next(m for m in got if "READY=1" in m)
    assert f"MAINPID={sup.pid}" in ready
    assert got.index(ready) < next(i for i, m in enumerate(got) if "STOPPING=1" in m)


def test_jobs_do_not_inherit_notify_socket(queue: jobq.Queue, processes, tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        processes.supervisor(queue.path, "-c", "1", env={"NOTIFY_SOCKET": path})
        job = queue.submit("tests.tasks:echo", args=("x",))
        job.join(timeout=30)
    env_job = queue.submit("os:getenv", args=("NOTIFY_SOCKET",), check=False)
    assert env_job.join(timeout=30) is None


# -- JSON logs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "env"])
def test_json_log_lines_parse(queue: jobq.Queue, processes, how: str) -> None:
    if how == "flag":
        sup = processes.supervisor(queue.path, "-c", "1", "--log-format", "json")
    else:
        sup = processes.supervisor(queue.path, "-c", "1", env={"JOBQ_LOG_FORMAT": "json"})
    bad = queue.submit("tests.tasks:fail", args=("kaboom",), queue="mail")
    loud = queue.submit("tests.tasks:shout", args=(2,))
    with pytest.raises(jobq.JobFailed):
        bad.join(timeout=30)
    loud.join(timeout=30)
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=30) == 0
    lines = [line for line in Path(sup.log_path).read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    keys = {"time", "level", "event", "message", "job_id", "queue", "target", "duration", "supervisor"}
    assert all(keys <= set(r) for r in records), records
    sup_id = records[0]["supervisor"]
    assert sup_id and all(r["supervisor"] == sup_id for r in records)
    failed = [r for r in records if r["job_id"] == bad.id and r["level"] == "WARNING"]
    assert failed, records
    assert failed[0]["queue"] == "mail" and failed[0]["target"] == "tests.tasks:fail"
    assert failed[0]["event"] == "job_failed" and "kaboom" in failed[0]["message"]
    assert isinstance(failed[0]["duration"], float)
    assert any(r["job_id"] == loud.id for r in records)  # its output lines
    assert {"supervisor_started", "supervisor_draining", "supervisor_stopped"} <= {r["event"] for r in records}
