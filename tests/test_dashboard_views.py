"""What the dashboard's pages compute from a record (jobq/dashboard/views.py): lengths of time,
relative times, a job's wait and duration, its timeline, its traceback cut into jobq's own
frames and the rest. Records come from real jobs run by a real supervisor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import jobq
from tests.conftest import Processes, wait_for

views = pytest.importorskip("jobq.dashboard.views")


def test_span_and_ago() -> None:
    assert [views.span(x) for x in (0.0123, 3.45, 42, 60, 61, 3600, 3661, 86400, 90000)] == [
        "12 ms", "3.5 s", "42 s", "1 min", "1 min 1 s", "1 h", "1 h 1 min", "1 d", "1 d 1 h",
    ]  # fmt: skip
    at = "2026-12-06T03:58:23.123+00:00"
    t = views.ts(at)
    assert t is not None
    assert views.ago(at, t + 3.2) == "3.2 s ago"
    assert views.ago(at, t - 300) == "in 5 min"
    assert views.ago(at, t + 0.2) == "just now"
    assert views.exact(at) == "2026-12-06 03:58:23.123 UTC"
    assert views.ago(None, t) == "" and views.exact(None) == ""


def _record(tmp_path: Path, processes: Processes, **options: Any) -> dict[str, Any]:
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    processes.supervisor(db, "-c", "1")
    job = q.submit("tests.dash_tasks:fail_once", (str(tmp_path / "once"),), **options)
    wait_for(lambda: job.state in ("succeeded", "failed"), timeout=30, what="the job to end")
    return q.record(job.id).to_dict()


def test_timeline_wait_and_duration_of_a_retried_job(tmp_path: Path, processes: Processes) -> None:
    # A backoff of 2 s waits 1-2 s (full jitter in [delay/2, delay]): the retry is due at least
    # 1 s after the submit, which the timeline needs to show it ("retry due"). With 1.5 s the
    # wait could be 0.75 s and the event missing (seen once in a fresh clone's run).
    record = _record(tmp_path, processes, retries=1, retry_backoff=2.0)
    assert record["state"] == "succeeded" and record["attempts"] == 2
    first = record["errors"][0]
    assert first["attempt"] == 1 and first["started_at"] and first["finished_at"]  # stored with the error
    now = views.ts(record["finished_at"]) + 10
    events = views.timeline(record, now)
    labels = [e["label"] for e in events]
    assert labels == [
        "submitted", "attempt 1 started", "attempt 1: RuntimeError", "retry due", "attempt 2 started", "attempt 2: succeeded",
    ]  # fmt: skip
    times = [views.ts(e["at"]) for e in events]
    assert times == sorted(times)
    assert [e["kind"] for e in events][-1] == "succeeded"
    t = views.timing(record, now)
    started, due, finished = (views.ts(record[k]) for k in ("started_at", "run_at", "finished_at"))
    assert t.wait == pytest.approx(started - due) and t.duration == pytest.approx(finished - started) and not t.running
    running = {**record, "state": "running", "finished_at": None}
    assert views.timing(running, started + 2).duration == pytest.approx(2)
    assert views.timeline(running, started + 2)[-1]["label"] == "running"


def test_traceback_frames_of_jobq_are_marked(tmp_path: Path, processes: Processes) -> None:
    record = _record(tmp_path, processes)
    tb = record["error"]["traceback"]
    pieces = views.frames(tb)
    assert "".join(p["text"] for p in pieces) == tb  # nothing lost, nothing added
    ours = "".join(p["text"] for p in pieces if p["ours"])
    theirs = "".join(p["text"] for p in pieces if not p["ours"])
    assert ours.count(f"{os.sep}jobq{os.sep}") >= 1 and "run_job" in ours
    assert "dash_tasks.py" in theirs and "RuntimeError: first call fails on purpose" in theirs
    assert "run_job" not in theirs and f"{os.sep}jobq{os.sep}" not in theirs
    assert sum(p["frames"] for p in pieces if p["ours"]) == ours.count('  File "')
    examples = f'  File "{views.JOBQ_DIR}examples.py", line 35, in fail\n    raise ValueError(message)\n'
    assert [p["ours"] for p in views.frames(examples)] == [False]  # jobq's examples are the user's code
