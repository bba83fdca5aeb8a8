"""Issue 15, part 2: ``running`` means a worker is running the job. Jobs a supervisor holds in a
prefetch batch read ``claimed``; a running job names its live worker and its real start; the
busy-workers gauge never exceeds the concurrency; a cancel of a held job no worker has started
withdraws it (it never starts). On both backends, with real supervisors and a real dashboard."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

import jobq
from tests.conftest import Processes, wait_for
from tests.dashboard_util import DashboardServer, require_dashboard_libs

pytestmark = pytest.mark.timeout(120)


def _warm_up(q: jobq.Queue, n: int = 60) -> None:
    """Short jobs first: the supervisor then claims in batches (a prefetch) of what follows."""
    jobs = q.submit_many("tests.tasks:add", [(i,) for i in range(n)])
    wait_for(lambda: all(j.state == "succeeded" for j in jobs[-3:]), timeout=60, what="the warm-up jobs")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_prefetched_job_cancelled_before_it_starts_never_starts(any_db: str, processes: Processes, tmp_path: Path) -> None:
    q = jobq.Queue(any_db)
    log = tmp_path / "ran.log"
    proc = processes.supervisor(any_db, "-c", "1")
    _warm_up(q)
    # One transaction, so one claim takes both: the long one runs, the other waits behind it.
    long_job, held = q.submit_batch(
        [
            {"target": "tests.tasks:record_then_sleep", "args": [str(log), "long", 4]},
            {"target": "tests.tasks:record", "args": [str(log), "held"]},
        ]
    )
    wait_for(lambda: long_job.state == "running", timeout=30, what="the long job to run")
    assert held.state == "claimed"  # held by the supervisor, not started by a worker
    counts = q.status()["counts"]
    assert (counts["running"], counts["claimed"]) == (1, 1)
    record = q.record(held.id)
    assert (record.started_at, record.worker) == (None, None)

    assert held.cancel() == "cancelling"
    wait_for(lambda: held.state == "cancelled", timeout=15, what="the supervisor to withdraw the held job")
    assert long_job.join(timeout=30) == "long"
    assert log.read_text().split() == ["long"]  # the held job never ran
    record = q.record(held.id)
    assert (record.started_at, record.worker) == (None, None)
    assert held.error is not None and held.error["type"] == "Cancelled"
    assert proc.poll() is None
    assert q.store.invariant_violations() == []  # type: ignore[attr-defined]


def test_a_running_job_names_its_live_worker_and_starts_when_its_worker_starts_it(
    any_db: str, processes: Processes, tmp_path: Path
) -> None:
    q = jobq.Queue(any_db)
    log = tmp_path / "ran.log"
    processes.supervisor(any_db, "-c", "1")
    _warm_up(q)
    first, second = q.submit_batch(
        [{"target": "tests.tasks:record_then_sleep", "args": [str(log), t, 0.6]} for t in ("first", "second")]
    )
    seen_running = set()
    deadline = time.monotonic() + 60
    while not second.refresh().state.finished:
        assert time.monotonic() < deadline, "the two jobs did not finish"
        for job in (first, second):
            record = job.refresh()
            if record.state == "running":  # read once: the record names a worker that is alive
                assert record.worker is not None and record.started_at is not None
                seen_running.add(job.id)
                if _alive(record.worker) is False:
                    assert job.refresh().state != "running", f"job {job.id} running on dead pid {record.worker}"
        time.sleep(0.01)
    assert seen_running == {first.id, second.id}
    a, b = first.refresh(), second.refresh()
    assert a.state == b.state == "succeeded"
    # The second waited in the batch while the first ran: its start is when its worker took it.
    assert b.started_at >= a.finished_at - 0.05
    assert b.finished_at - b.started_at >= 0.55


def test_workers_busy_never_exceeds_the_concurrency_while_two_workers_drain(
    any_db: str, processes: Processes, tmp_path: Path
) -> None:
    require_dashboard_libs()
    q = jobq.Queue(any_db)
    server = DashboardServer(any_db, tmp_path / "dashboard.log", "--read-only")
    try:
        # Mostly 1 ms jobs (claimed in batches of many), every tenth 100 ms (long enough to be
        # written running): a gauge that counted prefetched rows would read in the hundreds.
        jobs = q.submit_batch([{"target": "tests.tasks:sleep", "args": [0.1 if i % 10 == 0 else 0.001]} for i in range(500)])
        processes.supervisor(any_db, "-c", "2")
        busy_seen = []
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, f"the drain did not finish: {q.status()['counts']}"
            with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
                text = r.read().decode()
            values = [float(v) for v in re.findall(r"^jobq_workers_busy\{[^}]*\} (\S+)$", text, re.M)]
            busy_seen.extend(values)
            assert all(v <= 2 for v in values), f"jobq_workers_busy over the concurrency: {values}"
            if q.status()["counts"]["succeeded"] >= len(jobs):
                break
            time.sleep(0.02)
        assert len(busy_seen) >= 5 and max(busy_seen) >= 1, busy_seen  # the scrapes saw work
    finally:
        server.stop()
