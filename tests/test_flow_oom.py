"""A worker killed by the kernel's OOM killer is reported as such (issue 17): a supervisor in
a memory cgroup of its own (created here; skipped where this process may not create one)
runs a job that touches more memory than the cgroup allows."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobq
from jobq.runtime.oom import OomWatch
from tests.conftest import REPO, _env, wait_for

pytestmark = pytest.mark.timeout(120)


def _own_memory_cgroup() -> tuple[str, str] | None:
    """(directory of this process's memory cgroup, the file its limit goes in), v2 or v1."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base = Path("/sys/fs/cgroup", path.lstrip("/"))
            controls = base / "cgroup.controllers"
            if controls.exists() and "memory" in controls.read_text().split():
                return str(base), "memory.max"
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory", path.lstrip("/"))
            if base.is_dir():
                return str(base), "memory.limit_in_bytes"
    return None


@pytest.fixture
def cgroup() -> Iterator[str]:
    found = _own_memory_cgroup()
    if found is None:
        pytest.skip("no memory cgroup controller visible to this process")
    base, limit_file = found
    path = os.path.join(base, f"jobq-test-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(path)
        Path(path, limit_file).write_text(str(300 * 2**20))
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup here: {exc}")
    try:
        yield path
    finally:
        try:
            os.rmdir(path)
        except OSError:
            pass


def test_an_oom_kill_is_reported_as_out_of_memory(tmp_path: Path, cgroup: str) -> None:
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    victim = q.submit("tests.flow_tasks:allocate", (900,))
    log = open(tmp_path / "supervisor.log", "w")
    script = f'echo $$ > {cgroup}/cgroup.procs && exec "$0" -m jobq --db "$1" worker start -c 1'
    proc = subprocess.Popen(
        ["sh", "-c", script, sys.executable, db],
        cwd=REPO,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: q.record(victim.id).state == "failed", timeout=60, what="the job to fail")
        error = q.record(victim.id).error or {}
        assert error["type"] == "WorkerDied"
        assert "signal SIGKILL, out of memory (the kernel's OOM killer)" in error["message"]
        assert OomWatch().files  # this test process reads its own cgroup's counter too
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
        log.close()
