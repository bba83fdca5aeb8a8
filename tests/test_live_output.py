"""A running job's output is followed live: what it printed so far reaches the store within
a couple of seconds (`jobq logs`, the HTTP API and the dashboard read it), and its final
output replaces it when the attempt ends."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobq
from tests.conftest import run_cli, wait_for

pytestmark = pytest.mark.timeout(90)


def test_the_output_of_a_running_job_is_stored_as_it_grows(any_db: str, tmp_path: Path, processes) -> None:
    q = jobq.Queue(any_db)
    job = q.submit("tests.core_tasks:print_then_wait", args=(str(tmp_path / "more"), str(tmp_path / "release")))
    processes.supervisor(any_db, "-c", "1")
    wait_for(lambda: "first line" in q.logs(job.id), 20, what="the first line while the job runs")
    assert job.state == "running" and "second line" not in q.logs(job.id)
    (tmp_path / "more").touch()
    wait_for(lambda: "second line" in q.logs(job.id), 20, what="the second line while the job runs")
    assert job.state == "running"
    shown = run_cli(any_db, "logs", str(job.id))
    assert shown.returncode == 0 and "first line" in shown.stdout and "second line" in shown.stdout
    (tmp_path / "release").touch()
    assert job.join(timeout=30) == "done"
    assert q.logs(job.id) == "first line\nsecond line\nlast line\n"
