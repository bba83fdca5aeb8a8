"""What jobq leaves in the file system (issue 19): a supervisor's lock directory goes with the
last supervisor that leaves it, and a server database's directory in $TMPDIR whose
supervisors all died long ago (or whose database is gone) is swept by the next supervisor
that starts on this host. Real supervisors, real flocks, $TMPDIR pointed at tmp_path."""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import jobq
from jobq.core.local import STALE_LOCK_SECONDS
from tests.conftest import Processes, wait_for


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_the_last_supervisor_out_removes_the_lock_directory_of_a_file(tmp_path: Path, processes: Processes) -> None:
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    first = processes.supervisor(db, "-c", "1")
    second = processes.supervisor(db, "-c", "1")
    wait_for(lambda: len(q.live_supervisors()) == 2, timeout=30, what="two supervisors")
    assert q.submit("tests.tasks:add", (1,)).join(timeout=30) == 2
    locks = sorted(p.name for p in Path(db + "-jobq").glob("*.lock"))
    assert len(locks) == 2
    _stop(first)
    assert sorted(p.name for p in Path(db + "-jobq").glob("*.lock")) != locks and Path(db + "-jobq").is_dir()
    _stop(second)
    assert not Path(db + "-jobq").exists()
    third = processes.supervisor(db, "-c", "1")  # made again by the next one
    wait_for(lambda: list(Path(db + "-jobq").glob("*.lock")), timeout=30, what="a new lock file")
    _stop(third)
    assert not Path(db + "-jobq").exists()


def test_a_server_databases_directory_goes_with_its_last_supervisor(pg_url: str, tmp_path: Path, processes: Processes) -> None:
    env = {"TMPDIR": str(tmp_path)}
    digest = hashlib.sha1(pg_url.encode()).hexdigest()[:16]
    where = tmp_path / f"jobq-{digest}"
    proc = processes.supervisor(pg_url, "-c", "1", env=env)
    wait_for(lambda: list(where.glob("*.lock")), timeout=30, what="the lock file in $TMPDIR")
    q = jobq.Queue(pg_url)
    assert q.submit("tests.tasks:add", (2,)).join(timeout=30) == 3
    _stop(proc)
    assert not where.exists()


def _dead_lock(base: Path, name: str, age: float) -> Path:
    base.mkdir(mode=0o700, exist_ok=True)
    lock = base / f"{name}.lock"
    lock.write_text("12345")
    (base / name).mkdir(exist_ok=True)  # its work folder
    (base / name / "worker-1.out").write_text("old output")
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def test_a_supervisor_sweeps_long_dead_server_lock_directories(pg_url: str, tmp_path: Path, processes: Processes) -> None:
    gone_db = tmp_path / "jobq-00000000deadbeef"  # a schema dropped long ago: only a stale lock
    _dead_lock(gone_db, "sup-old", STALE_LOCK_SECONDS + 60)
    recent = tmp_path / "jobq-00000000000f7e57"  # died a minute ago: its peers may still want the proof
    fresh_lock = _dead_lock(recent, "sup-recent", 60)
    alive = tmp_path / "jobq-00000000a11fe000"  # held by a live process, however old
    held_lock = _dead_lock(alive, "sup-alive", STALE_LOCK_SECONDS * 3)
    mixed = tmp_path / "jobq-000000000000abcd"  # something that is not jobq's
    _dead_lock(mixed, "sup-mixed", STALE_LOCK_SECONDS * 3)
    (mixed / "notes.txt").write_text("keep me")
    fd = os.open(held_lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = processes.supervisor(pg_url, "-c", "1", env={"TMPDIR": str(tmp_path)})
        wait_for(lambda: not gone_db.exists(), timeout=30, what="the stale directory to be swept")
        assert fresh_lock.exists() and (recent / "sup-recent").is_dir()
        assert held_lock.exists() and (alive / "sup-alive").is_dir()
        assert (mixed / "notes.txt").exists() and (mixed / "sup-mixed.lock").exists()
        _stop(proc)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("jobq-")) == sorted(
        [recent.name, alive.name, mixed.name]
    )
