"""A database that cannot be used gives one clear error and a non-zero exit, and never a
half-written job: not a jobq database, corrupt, read-only, on a full disk, missing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobq
from tests.conftest import run_cli

EXIT_STORE = 4


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == EXIT_STORE, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert any(n in lines[0] for n in needles), lines[0]


def _tables(path: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))


def test_not_a_jobq_database(tmp_path: Path) -> None:
    path = str(tmp_path / "other.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers(name) VALUES ('ada')")
    before = _tables(path)
    _one_line_error(run_cli(path, "submit", "tests.tasks:add", "1"), "not a jobq database")
    _one_line_error(run_cli(path, "status"), "not a jobq database")
    with pytest.raises(jobq.StoreError, match="not a jobq database"):
        jobq.Queue(path)
    assert _tables(path) == before


@pytest.mark.parametrize("content", [b"this is a text file, not a database\n" * 100, os.urandom(16384)])
def test_corrupt_or_foreign_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(content)
    _one_line_error(run_cli(str(path), "submit", "tests.tasks:add", "1"), "not a SQLite database, or corrupt")
    with pytest.raises(jobq.StoreError):
        jobq.Queue(str(path))
    assert path.read_bytes() == content


def test_damaged_jobq_database(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    q = jobq.Queue(str(path))
    q.submit_many("tests.tasks:add", [(i,) for i in range(2000)])
    q.store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data)):
        data[offset] = 0xA5  # overwrite every b-tree page but the first (schema and header)
    path.write_bytes(bytes(data))
    result = run_cli(str(path), "list", "--limit", "5000")
    assert result.returncode == EXIT_STORE, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_missing_directory(tmp_path: Path) -> None:
    path = str(tmp_path / "no" / "such" / "dir" / "jobs.db")
    _one_line_error(run_cli(path, "submit", "tests.tasks:add", "1"), "does not exist")
    assert not os.path.exists(os.path.dirname(path))


def test_schema_newer_than_this_jobq(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    jobq.Queue(path).store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
    _one_line_error(run_cli(path, "status"), "newer than this jobq")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system of our own (needs root: mount)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_full_disk_leaves_no_half_written_job(small_tmpfs: Path) -> None:
    path = str(small_tmpfs / "jobs.db")
    q = jobq.Queue(path)
    first = q.submit("tests.tasks:add", args=(1,))
    filler = small_tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # ENOSPC: the disk is full now
    finally:
        os.close(fd)
    big = "x" * 200_000
    with pytest.raises(jobq.StoreError, match="disk is full"):
        q.submit("tests.tasks:add", args=(big,))
    result = run_cli(path, "submit", "tests.tasks:add", f'"{big[:100_000]}"')
    _one_line_error(result, "disk is full")
    filler.unlink()
    q.store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r[0] for r in conn.execute("SELECT id FROM jobs")] == [first.id]


def test_read_only_file_system(small_tmpfs: Path) -> None:
    path = str(small_tmpfs / "jobs.db")
    q = jobq.Queue(path)
    q.submit("tests.tasks:add", args=(1,))
    q.store.close()
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
    result = run_cli(path, "submit", "tests.tasks:add", "2")
    _one_line_error(result, "read-only", "cannot open")
    with pytest.raises(jobq.StoreError):
        jobq.Queue(path).submit("tests.tasks:add", args=(3,))
    subprocess.run(["mount", "-o", "remount,rw", str(small_tmpfs)], capture_output=True)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
