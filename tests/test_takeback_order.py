"""A job taken back from a dead supervisor keeps its place in line (issue 15): its due time
and priority, not behind everything submitted while it was in flight. Real supervisors, a
real SIGKILL, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import jobq
from tests.conftest import states, wait_for

pytestmark = pytest.mark.timeout(120)


def _held(q: jobq.Queue) -> dict[str, int]:
    """Counts with the jobs a supervisor holds (claimed, or started by a worker) together."""
    counts = states(q)
    held = counts.pop("claimed", 0) + counts.pop("running", 0)
    return {**counts, "held": held} if held else counts


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_jobs_taken_back_from_a_killed_supervisor_run_before_those_queued_behind_them(
    any_db: str, tmp_path: Path, processes
) -> None:
    q = jobq.Queue(any_db)
    ran = tmp_path / "ran.txt"
    in_flight = [q.submit("tests.tasks:record_then_hang_first", (str(ran), f"lost{i}")) for i in range(2)]
    first = processes.supervisor(any_db, "-c", "2", log_name="first.log")
    wait_for(lambda: sorted(_lines(ran)) == ["lost0 1", "lost1 1"], 60, what="both jobs running on the first supervisor")
    # Queued behind them while they run (both workers busy: nothing is claimed ahead).
    behind = [q.submit("tests.tasks:record", (str(ran), f"q{i}")) for i in range(18)]
    assert _held(q) == {"queued": 18, "held": 2}

    os.kill(first.pid, signal.SIGKILL)  # its workers die with it (PR_SET_PDEATHSIG)
    first.wait(30)
    assert _held(q) == {"queued": 18, "held": 2}  # nobody has taken them back yet

    processes.supervisor(any_db, "-c", "1", log_name="second.log")  # one worker: the run order is the line's order
    wait_for(lambda: states(q).get("succeeded", 0) == 20, 60, what="every job done after the restart")
    after_restart = _lines(ran)[2:]
    assert after_restart == ["lost0 2", "lost1 2", *(f"q{i}" for i in range(18))], after_restart
    for job in in_flight:
        record = q.record(job.id)
        assert record.attempts == 2 and record.errors and record.errors[0]["type"] == "SupervisorLost", record
    assert [j.join(timeout=10) for j in behind] == [f"q{i}" for i in range(18)]


def test_a_taken_back_job_keeps_its_priority_and_due_time(any_db: str, tmp_path: Path, processes) -> None:
    q = jobq.Queue(any_db)
    ran = tmp_path / "ran.txt"
    lost = q.submit("tests.tasks:record_then_hang_first", (str(ran), "lost"), priority=5)
    first = processes.supervisor(any_db, "-c", "1", log_name="first.log")
    wait_for(lambda: _lines(ran) == ["lost 1"], 60, what="the job running on the first supervisor")
    due = q.record(lost.id).run_at
    q.submit("tests.tasks:record", (str(ran), "urgent"), priority=9)  # ahead of it, by priority
    q.submit("tests.tasks:record", (str(ran), "later"), priority=5)  # behind it: same priority, due later
    os.kill(first.pid, signal.SIGKILL)
    first.wait(30)
    processes.supervisor(any_db, "-c", "1", log_name="second.log")
    wait_for(lambda: states(q).get("succeeded", 0) == 3, 60, what="every job done after the restart")
    assert _lines(ran)[1:] == ["urgent", "lost 2", "later"]
    record = q.record(lost.id)
    assert record.run_at == due and record.priority == 5
