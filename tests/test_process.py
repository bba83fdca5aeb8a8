"""jobq.Process: the multiprocessing.Process shape as durable jobs, through real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import jobq
from jobq.compat import process as jobq_process
from tests import tasks
from tests.conftest import REPO, _env, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_leftover_embedded():
    """Every test leaves no embedded supervisor of jobq.Process running."""
    yield
    for sup, _ in list(jobq_process._embedded.values()):
        sup.stop(now=True, timeout=10)
    jobq_process._embedded.clear()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not reaped yet) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_seed_example_runs_through_jobq_process(tmp_path: Path) -> None:
    """The tutorial's five-process example, its import changed to jobq, prints Worker: 0..4,
    leaves five succeeded jobs in ./jobq.db, and no supervisor behind."""
    script = (REPO / "scripts" / "seed_example.py").read_text()
    assert "import jobq as multiprocessing\n" in script and "multiprocessing.Process(target=worker, args=(i,))" in script
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "seed_example.py")],
        cwd=tmp_path,
        env={k: v for k, v in _env().items() if k != "JOBQ_DB"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"Worker: {i}" for i in range(5)]
    q = jobq.Queue(str(tmp_path / "jobq.db"))
    records = q.list(limit=10)
    assert sorted(r.args[0] for r in records) == list(range(5))
    assert {r.state for r in records} == {"succeeded"}
    assert {r.target for r in records} == {"seed_example:worker"}
    assert q.live_supervisors() == []


def test_process_shape(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    p = jobq.Process(target=tasks.shout, args=(7,), name="shouter", db=db_path)
    assert p.exitcode is None and not p.is_alive() and p.job is None and p.pid is None
    p.start()
    assert isinstance(p.job, jobq.Job) and p.name == "shouter"
    with pytest.raises(RuntimeError):
        p.start()
    assert p.join(timeout=30) == 7
    assert p.exitcode == 0 and not p.is_alive()
    record = p.job.refresh()
    assert record.name == "shouter" and record.state == "succeeded"
    assert p.pid == record.worker and p.pid != os.getpid()
    assert "Worker: 7" in capsys.readouterr().out  # the job's output, echoed at join
    assert jobq_process._embedded == {}  # joined: the embedded supervisor is gone


def test_process_failure_and_signal_exitcodes(db_path: str) -> None:
    failing = jobq.Process(target=tasks.fail, args=("nope",), db=db_path)
    killed = jobq.Process(target=tasks.kill_self, db=db_path)
    exiting = jobq.Process(target=tasks.exit_hard, args=(3,), db=db_path)
    for p in (failing, killed, exiting):
        p.start()
    with pytest.raises(jobq.JobFailed) as info:
        failing.join(30)
    assert info.value.error_type == "ValueError" and failing.exitcode == 1
    with pytest.raises(jobq.JobFailed) as info:
        killed.join(30)
    assert info.value.error_type == "WorkerDied" and "SIGKILL" in info.value.message
    assert killed.exitcode == -signal.SIGKILL
    with pytest.raises(jobq.JobFailed):
        exiting.join(30)
    assert exiting.exitcode == 3


def test_join_timeout_pid_and_terminate(db_path: str) -> None:
    p = jobq.Process(target=tasks.sleep, args=(30,), db=db_path)
    p.start()
    assert p.join(timeout=0.3) is None  # like multiprocessing: None when the timeout passes
    assert p.is_alive() and p.exitcode is None
    wait_for(lambda: p.job.state == "running", what="the job to run")
    pid = wait_for(lambda: p.pid, what="the worker's pid")
    assert _pid_alive(pid) and pid != os.getpid()
    p.kill()  # kill() and terminate() both cancel
    assert p.join(timeout=30) is None  # cancelled: join returns, as after Process.terminate
    assert p.exitcode == 1 and not p.is_alive()
    assert p.job.state == "cancelled"
    wait_for(lambda: not _pid_alive(pid), what="the worker running it to be ended")


def test_uses_a_running_supervisor_and_supervise_false(db_path: str, processes) -> None:
    waiting = jobq.Process(target=tasks.add, args=(1, 2), db=db_path, supervise=False)
    waiting.start()
    assert jobq_process._embedded == {}
    assert waiting.join(timeout=0.5) is None and waiting.job.state == "queued"  # nobody runs it
    processes.supervisor(db_path, "-c", "1")
    q = jobq.Queue(db_path)
    wait_for(lambda: q.live_supervisors(), what="the supervisor to register")
    assert waiting.join(timeout=30) == 3
    served = jobq.Process(target=tasks.add, args=(5,), db=db_path, retries=2, priority=3)
    served.start()
    assert jobq_process._embedded == {}  # the live supervisor serves it: none embedded
    assert served.join(timeout=30) == 6
    record = served.job.refresh()
    assert record.max_attempts == 3 and record.priority == 3


def test_default_database_is_the_clis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_DB", str(tmp_path / "from-env.db"))
    monkeypatch.delenv("JOBQ_CONFIG", raising=False)
    p = jobq.Process(target=tasks.add, args=(40, 2))
    p.start()
    assert p.join(timeout=30) == 42
    assert jobq.Queue(str(tmp_path / "from-env.db")).get(p.job.id).result == 42


def test_bad_input_is_rejected_before_anything_is_stored(db_path: str) -> None:
    with pytest.raises(ValueError):
        jobq.Process(db=db_path)
    p = jobq.Process(target=tasks.add, args=(object(),), db=db_path)
    with pytest.raises(jobq.ValidationError):
        p.start()
    with pytest.raises(jobq.ValidationError):
        jobq.Process(target=tasks.add, args=(1,), db=db_path, bogus=1)
    with pytest.raises(AssertionError):
        jobq.Process(target=tasks.add, db=db_path).join()
    assert jobq.Queue(db_path).list() == []


def test_process_on_postgresql(pg_url: str) -> None:
    """The same shape on PostgreSQL: an embedded supervisor, the worker's pid while it runs."""
    p = jobq.Process(target=tasks.sleep, args=(0.5,), db=pg_url)
    p.start()
    pid = wait_for(lambda: p.pid, what="the worker's pid")
    assert p.is_alive() and _pid_alive(pid)
    assert p.join(timeout=30) == 0.5 and p.exitcode == 0
