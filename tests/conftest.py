"""Shared fixtures: real files in tmp_path, real processes, cleaned up by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import jobq

REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


@pytest.fixture
def queue(db_path: str) -> jobq.Queue:
    return jobq.Queue(db_path)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("JOBQ_CONFIG", None)
    return env


def run_cli(db: str, *args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jobq --db DB ARGS...`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "jobq", "--db", db, *args],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, input=input,
    )


class Processes:
    """Starts supervisors as real processes; kills every one (and its group) at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[str]] = []

    def supervisor(self, db: str, *args: str, log_name: str | None = None) -> subprocess.Popen[str]:
        log = self.tmp_path / (log_name or f"supervisor-{len(self.procs)}.log")
        fh = open(log, "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobq", "--db", db, "worker", "start", *args],
            cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        proc.log_path = log  # type: ignore[attr-defined]
        fh.close()
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            for sig in (signal.SIGKILL,):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.cleanup()
