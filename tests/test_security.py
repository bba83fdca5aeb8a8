"""Security (issue 12): owner-only files, the allow-list of targets (TargetNotAllowed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import jobq
from jobq.core.allow import is_allowed, resolve_allowed
from jobq.core.errors import TargetNotAllowed
from tests.conftest import run_cli, wait_for


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- file modes ---------------------------------------------------------------------------------
def _files_of(db: str) -> dict[str, int]:
    """Mode of every file and folder the database and its supervisors have beside it."""
    out = {}
    base = Path(db)
    for p in [base, *base.parent.glob(base.name + "-*")]:
        out[str(p)] = mode(p)
        if p.is_dir():
            for sub in p.rglob("*"):
                out[str(sub)] = mode(sub)
    return out


@pytest.mark.parametrize("file_mode", [None, "0640"])
def test_new_database_and_its_files_are_owner_only(tmp_path: Path, processes, file_mode: str | None) -> None:
    db = str(tmp_path / "jobs.db")
    env = {"JOBQ_FILE_MODE": file_mode} if file_mode else {}
    want_file, want_dir = (0o640, 0o750) if file_mode else (0o600, 0o700)
    old = os.umask(0)  # the modes must not depend on the umask
    try:
        q = jobq.Queue(db, config=jobq.load_settings(environ=env, overrides={"db": db}))
    finally:
        os.umask(old)
    assert mode(db) == want_file
    sup = processes.supervisor(db, "-c", "2", env=env)
    job = q.submit("tests.tasks:shout", args=(2,))
    assert job.join(timeout=30) is not None
    wait_for(lambda: list(Path(db + "-jobq").rglob("worker-*.out")), 30, what="worker output files")
    seen = _files_of(db)
    names = {Path(p).name for p in seen}
    assert {"jobs.db", "jobs.db-wal", "jobs.db-shm", "jobs.db-jobq"} <= names, seen
    assert any(n.endswith(".lock") for n in names) and any(n.startswith("worker-") for n in names), seen
    for path, m in seen.items():
        want = want_dir if os.path.isdir(path) else want_file
        assert m == want, f"{path}: {oct(m)}, expected {oct(want)}"
    sup.terminate()
    assert sup.wait(timeout=30) == 0


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    db.touch()
    os.chmod(db, 0o644)
    q = jobq.Queue(str(db))
    q.submit("tests.tasks:add", args=(1, 2))
    assert mode(db) == 0o644
    folder = tmp_path / "out"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    from jobq.core.fsmodes import make_dir

    make_dir(str(folder))
    assert mode(folder) == 0o755


@pytest.mark.parametrize("bad", ["0400", "0o1777", "rw-------", "999", 384 * 4])
def test_bad_file_mode_is_a_config_error(bad: object) -> None:
    with pytest.raises(jobq.ConfigError) as info:
        jobq.load_settings(environ={}, overrides={"file_mode": bad})
    assert info.value.field == "file_mode"


# -- allow-list -----------------------------------------------------------------------------------
def test_allow_list_reads_text_only() -> None:
    allowed = ["tests.tasks", "myapp.jobs:send"]
    assert is_allowed("tests.tasks:add", allowed)
    assert is_allowed("tests.tasks.sub:fn", allowed)
    assert is_allowed("myapp.jobs:send", allowed)
    assert not is_allowed("myapp.jobs:other", allowed)
    assert not is_allowed("tests.tasksevil:fn", allowed)
    assert not is_allowed("os:system", allowed)
    assert not is_allowed("tests.tasks", allowed)  # not a target
    assert is_allowed("os:system", None) and is_allowed("os:system", [])
    with pytest.raises(TargetNotAllowed):
        resolve_allowed("tests.tasks:os.system", ["tests.tasks"])  # through a module
    with pytest.raises(TargetNotAllowed):
        resolve_allowed("tests.tasks:add.__globals__", ["tests.tasks"])
    assert resolve_allowed("tests.tasks:add", ["tests.tasks"])(1, 2) == 3


def test_worker_refuses_a_job_put_in_the_file_by_another_process(tmp_path: Path, processes) -> None:
    db = str(tmp_path / "jobs.db")
    marker, pwned = tmp_path / "imported.txt", tmp_path / "pwned.txt"
    # Another process, with no allow-list, writes jobs into the file.
    for args in (
        ["submit", "--no-check", "tests.evil:run"],
        ["submit", "--no-check", "--retries", "3", "os:system", f"touch {pwned}"],
        ["submit", "--no-check", "tests.tasks:os.system", f"touch {pwned}"],
        ["submit", "tests.tasks:add", "1", "2"],
    ):
        out = run_cli(db, *args)
        assert out.returncode == 0, out.stderr
    q = jobq.Queue(db)
    evil, system, sneaky, fine = (q.get(i) for i in (1, 2, 3, 4))
    sup = processes.supervisor(db, "-c", "1", "--allow", "tests.tasks", env={"JOBQ_TEST_IMPORT_MARKER": str(marker)})
    assert fine.join(timeout=30) == 3
    for job in (evil, system, sneaky):
        with pytest.raises(jobq.JobFailed) as info:
            job.join(timeout=30)
        assert info.value.error_type == "TargetNotAllowed", info.value
    assert q.record(system.id).attempts == 1  # refused once, not retried
    assert not marker.exists(), "the refused target was imported"
    assert not pwned.exists()
    sup.terminate()
    assert sup.wait(timeout=30) == 0


def test_allow_list_from_the_environment(tmp_path: Path, processes) -> None:
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    refused = q.submit("tests.tasks:add", args=(1, 2))
    allowed = q.submit("tests.evil:run", check=False)
    processes.supervisor(db, "-c", "1", env={"JOBQ_ALLOWED_TARGETS": "tests.evil, jobq.examples"})
    assert allowed.join(timeout=30) == "ran"
    with pytest.raises(jobq.JobFailed) as info:
        refused.join(timeout=30)
    assert info.value.error_type == "TargetNotAllowed"


def test_submits_are_checked_when_the_list_is_set(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db, config=jobq.load_settings(environ={}, overrides={"db": db, "allowed_targets": ["tests.tasks"]}))
    assert q.submit("tests.tasks:add", args=(1, 2)).id == 1
    before = Path(db).read_bytes()
    for call in (
        lambda: q.submit("os:system", args=("true",)),
        lambda: q.submit_batch([{"target": "tests.tasks:add"}, {"target": "os:system"}]),
        lambda: q.map("os:getenv", ["A"]),
        lambda: q.schedule("s", "os:system", args=["x"], every=60),
    ):
        with pytest.raises(TargetNotAllowed):
            call()
    assert Path(db).read_bytes() == before
    env = {"JOBQ_ALLOWED_TARGETS": "tests.tasks"}
    out = run_cli(db, "submit", "os:system", "true", env=env)
    assert out.returncode == 2 and "not in the allowed targets" in out.stderr, out.stderr
    with pytest.raises(jobq.ConfigError):  # a configured schedule outside the list
        jobq.load_settings(
            environ={},
            overrides={"allowed_targets": ["tests.tasks"], "schedules": [{"name": "x", "target": "os:system", "every": 5}]},
        )
