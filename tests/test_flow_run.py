"""Flow control with real supervisors (issue 17), on SQLite and PostgreSQL: a rate shared by
two supervisors, fair partitions, the per-partition cap, cpu slots, memory caps, quarantine
and crash-loop back-off."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import jobq
from tests import flow_tasks
from tests.conftest import Processes, run_cli, wait_for

pytestmark = pytest.mark.timeout(180)


def _finished(q: jobq.Queue, n: int) -> bool:
    counts = q.status()["counts"]
    return counts["succeeded"] + counts["failed"] + counts["cancelled"] >= n


def _claims(q: jobq.Queue, queue: str) -> list[float]:
    """When each job of ``queue`` was claimed: the moment the queue's rate paid for its start."""
    return sorted(r.claimed_at for r in q.list(queue=queue, limit=100_000) if r.claimed_at is not None)


def _overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one time."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_two_supervisors_keep_a_rate_of_starts(any_db: str, processes: Processes) -> None:
    q = jobq.Queue(any_db)
    q.set_queue_rate("rated", 50, 1.0)
    q.submit_many("tests.tasks:add", [(i,) for i in range(300)], queue="rated")
    for _ in range(2):
        processes.supervisor(any_db, "-c", "2", "--burst")
    wait_for(lambda: _finished(q, 300), timeout=60, what="300 jobs")
    starts = _claims(q, "rated")
    assert len(starts) == 300
    assert starts[-1] - starts[0] >= 4.9  # 50 at once, then 250 at 50 a second
    worker_starts = sorted(r.started_at for r in q.list(queue="rated", limit=1000) if r.started_at)
    assert worker_starts[-1] - worker_starts[0] >= 4.9
    # No 1-second window holds more than count x (1 + 1/1) = 100 starts (as the claims that
    # paid for them; a worker starts a rated job as soon as it gets it, within scheduling delay).
    j = 0
    for i, t in enumerate(starts):
        while starts[j] < t - 1.0:
            j += 1
        assert i - j + 1 <= 100, f"{i - j + 1} starts within 1 s ending at {t - starts[0]:.3f}"
    assert len({r.owner for r in q.list(queue="rated", limit=1000)}) == 2  # both supervisors took part


def test_a_small_tenant_starts_within_the_first_batches(any_db: str, processes: Processes) -> None:
    q = jobq.Queue(any_db)
    q.submit_many("tests.tasks:add", [(i,) for i in range(10_000)], queue="fair", partition="A")
    small = [q.submit("tests.tasks:add", (i,), queue="fair", partition="B") for i in range(10)]
    processes.supervisor(any_db, "-c", "2", "-q", "fair")
    wait_for(lambda: all(j.state == "succeeded" for j in small), timeout=60, what="the small tenant's jobs")
    records = [r for r in q.list(queue="fair", limit=100_000) if r.started_at is not None]
    order = sorted(records, key=lambda r: (r.started_at, r.id))
    ranks = [i for i, r in enumerate(order) if r.partition == "B"]
    assert len(ranks) == 10 and max(ranks) < 60, ranks  # not after A's 10,000


def test_the_partition_cap_holds_across_two_supervisors(any_db: str, processes: Processes, tmp_path: Path) -> None:
    q = jobq.Queue(any_db)
    q.set_queue_limit("tenants", per_partition=1)
    log = str(tmp_path / "starts.log")
    jobs = [q.submit(flow_tasks.hold, (log, f"{p}{i}", 0.2), queue="tenants", partition=p) for i in range(4) for p in ("x", "y")]
    for _ in range(2):
        processes.supervisor(any_db, "-c", "2", "-q", "tenants", "--burst")
    for job in jobs:
        job.join(timeout=60)
    ran = flow_tasks.spans(log)  # as the jobs themselves saw it
    for p in ("x", "y"):
        mine = [span for token, span in ran.items() if token.startswith(p)]
        assert len(mine) == 4 and _overlap(mine) == 1, mine
    assert _overlap(list(ran.values())) == 2  # the two partitions ran side by side


def test_slots_are_counted_not_workers(any_db: str, processes: Processes, tmp_path: Path) -> None:
    q = jobq.Queue(any_db)
    log = str(tmp_path / "starts.log")
    pairs = [q.submit(flow_tasks.hold, (log, f"p{i}", 0.4), queue="cpu", cpus=2) for i in range(4)]
    too_big = q.submit("tests.tasks:add", (1,), queue="cpu", cpus=8)
    processes.supervisor(any_db, "-c", "4", "-q", "cpu")
    for job in pairs:
        job.join(timeout=60)
    assert _overlap(list(flow_tasks.spans(log).values())) == 2  # 4 slots: two cpus=2 jobs at once
    assert too_big.state == "queued"
    out = run_cli(any_db, "status", str(too_big.id))
    assert out.returncode == 0
    assert "needs 8 cpu slots; the largest live supervisor serving queue cpu has 4" in out.stdout


def test_a_job_over_its_memory_cap_fails_alone(any_db: str, processes: Processes) -> None:
    q = jobq.Queue(any_db)
    warm = [q.submit(flow_tasks.allocate, (10,), queue="mem") for _ in range(4)]
    sup = processes.supervisor(any_db, "-c", "2", "-q", "mem")
    for job in warm:
        assert job.join(timeout=30) == 10
    before = _rss_mb(sup.pid)
    capped = q.task(flow_tasks.allocate, queue="mem", memory_mb=200)  # the decorator carries the cap too
    big = capped.submit(500)
    side = [q.submit(flow_tasks.allocate, (50,), queue="mem", memory_mb=200) for _ in range(3)]
    with pytest.raises(jobq.JobFailed) as info:
        big.join(timeout=60)
    assert info.value.error_type == "JobOutOfMemory"
    assert "memory limit of 200 MB" in info.value.message and "peak resident memory" in info.value.message
    assert [j.join(timeout=60) for j in side] == [50, 50, 50]  # the other jobs and workers go on
    after = [q.submit(flow_tasks.allocate, (300,), queue="mem") for _ in range(2)]  # no cap: 300 MB is fine
    assert [j.join(timeout=60) for j in after] == [300, 300]
    assert _rss_mb(sup.pid) < before + 10  # the supervisor's memory stays flat


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_job_that_keeps_killing_its_worker_is_quarantined(any_db: str, processes: Processes) -> None:
    q = jobq.Queue(any_db)
    bad = q.submit("tests.tasks:kill_self", (int(signal.SIGSEGV),), queue="crash", retries=10, retry_backoff=0)
    plain = q.submit("tests.tasks:fail", queue="crash")
    processes.supervisor(any_db, "-c", "1", "-q", "crash", "--burst")
    with pytest.raises(jobq.JobFailed) as info:
        bad.join(timeout=60)
    assert info.value.error_type == "Quarantined" and "3 attempts in a row" in info.value.message
    assert q.record(bad.id).attempts == 3 and q.record(bad.id).quarantined
    with pytest.raises(jobq.JobFailed):
        plain.join(timeout=60)
    out = run_cli(any_db, "retry", "--failed", "--json")
    assert out.returncode == 0 and f'"requeued": [{plain.id}]' in out.stdout
    out = run_cli(any_db, "retry", "--failed", "--include-quarantined", "--json")
    assert out.returncode == 0 and str(bad.id) in out.stdout
    assert q.record(bad.id).state == "queued" and not q.record(bad.id).quarantined


def test_a_crash_loop_makes_the_supervisor_back_off(db_path: str, processes: Processes) -> None:
    q = jobq.Queue(db_path)
    dying = [q.submit("tests.tasks:kill_self", (int(signal.SIGKILL),)) for _ in range(12)]
    sup = processes.supervisor(db_path, "-c", "1")
    log: Path = sup.log_path  # type: ignore[attr-defined]
    wait_for(lambda: "crash loop: no claims for 1s" in log.read_text(), timeout=60, what="the crash-loop line")
    line = next(x for x in log.read_text().splitlines() if "crash loop" in x)
    assert "workers died for 10 jobs in a row" in line and "signal SIGKILL" in line
    wait_for(lambda: all(j.state == "failed" for j in dying), timeout=60, what="the remaining jobs, after the pause")


def test_the_config_stores_rates_and_partition_caps(tmp_path: Path, processes: Processes) -> None:
    db = str(tmp_path / "jobs.db")
    config = tmp_path / "jobq.toml"
    config.write_text('[queues.mail]\nrate = "100/m"\npartition_concurrency = 3\nmemory_mb = 64\n')
    q = jobq.Queue(db, config=str(config))
    job = q.submit(flow_tasks.pid, queue="mail")
    assert q.record(job.id).memory_mb == 64  # the queue's default
    sup = processes.supervisor(db, "--burst", env={"JOBQ_CONFIG": str(config)})
    assert sup.wait(timeout=60) == 0
    (info,) = [c for c in q.queues() if c.name == "mail"]
    assert (info.rate, info.partition_concurrency) == ("100/m", 3)
    assert job.join(timeout=10) > 0 and os.path.exists(db)


def test_bad_values_change_nothing(any_db: str) -> None:
    q = jobq.Queue(any_db)
    q.set_queue_limit("q", 3)
    before = [c.to_dict() for c in q.queues()]
    for args in (("--rate", "0/s"), ("--rate", "fast"), ("--per-partition", "0"), ("2", "--rate", "5/x")):
        out = run_cli(any_db, "queues", "limit", "q", *args)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert ("rate" in out.stderr) or ("per_partition" in out.stderr)
    for call, field in (
        (lambda: q.set_queue_rate("q", 0, 1), "rate"),
        (lambda: q.set_queue_rate("q", 5, -1), "per_seconds"),
        (lambda: q.set_queue_limit("q", per_partition=0), "per_partition"),
        (lambda: q.submit("tests.tasks:add", (1,), memory_mb=-1), "memory_mb"),
        (lambda: q.submit("tests.tasks:add", (1,), cpus=0), "cpus"),
        (lambda: q.submit("tests.tasks:add", (1,), partition=""), "partition"),
    ):
        with pytest.raises(jobq.ValidationError) as info:
            call()
        assert info.value.field == field
    assert [c.to_dict() for c in q.queues()] == before and q.status()["counts"]["queued"] == 0
    for flag, value, field in (("--memory-mb", "-5", "memory_mb"), ("--cpus", "0", "cpus")):
        out = run_cli(any_db, "submit", "tests.tasks:add", "1", flag, value)
        assert out.returncode == 2 and field in out.stderr
    assert q.status()["counts"]["queued"] == 0


def test_debounce_keeps_the_newest_arguments(any_db: str) -> None:
    q = jobq.Queue(any_db)
    first = q.submit("tests.tasks:add", (1,), key="refresh")
    again = q.submit("tests.tasks:add", (2,), key="refresh", on_conflict="replace")
    assert again.id == first.id and again.existing and q.record(first.id).args == [2]
    with jobq.Supervisor(q, concurrency=1):
        assert first.join(timeout=30) == 3
