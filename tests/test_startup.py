"""CLI start-up (issue 12): each command imports only what it needs. What is asserted is the
set of modules loaded (``python -X importtime``), never a time: the figures are in
scripts/bench.py (``startup`` section), against ``python -c pass`` and RQ's CLI."""

from __future__ import annotations

import subprocess
import sys

import jobq
from tests.conftest import REPO, _env

VALIDATION = ("pydantic", "pydantic_core", "annotated_types")
HEAVY = (*VALIDATION, "croniter", "psycopg", "sqlite_utils", "fastapi", "starlette", "uvicorn", "jinja2")


def imported(*args: str) -> set[str]:
    env = _env()
    for key in [k for k in env if k.startswith("JOBQ_")]:
        env.pop(key)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jobq", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "jobq" in names  # the trace really was read
    return names


def heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


def test_version_imports_nothing_of_the_api(tmp_path) -> None:
    names = imported("--version")
    assert heavy(names) == []
    assert not {"jobq.client.queue", "jobq.store", "jobq.runtime.supervisor", "jobq.worker.main"} & names


def test_status_skips_validation_schedules_servers_and_the_supervisor(tmp_path) -> None:
    db = str(tmp_path / "jobs.db")
    jobq.Queue(db).submit("tests.tasks:add", args=(1, 2))
    names = imported("--db", db, "status")
    assert heavy(names) == []
    assert not {"jobq.runtime.supervisor", "jobq.worker.main", "jobq.store.postgres"} & names


def test_submit_skips_schedules_servers_and_the_supervisor(tmp_path) -> None:
    db = str(tmp_path / "jobs.db")
    jobq.Queue(db)  # a new file is migrated (sqlite_utils): not what a shell loop pays
    names = imported("--db", db, "submit", "tests.tasks:add", "1", "2")
    # pydantic validates the job: the one heavy import submit needs
    assert [n for n in heavy(names) if n.split(".")[0] not in VALIDATION] == []
    assert not {"jobq.runtime.supervisor", "jobq.worker.main", "jobq.store.postgres"} & names
