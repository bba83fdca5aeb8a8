"""Several hosts, for real (issue 12): ``scripts/hosts.py`` runs three jobq supervisors on three
Linux namespace-hosts (own network, host name and /tmp) against one PostgreSQL database and
cuts one host's link in the middle of its jobs. Needs root, iproute2, util-linux and socat:
skipped with the reason where namespaces cannot be made, a failure in CI (``CI=true``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import PG_URL, REPO, _env, wait_for

sys.path.insert(0, str(REPO / "scripts"))
import hosts_net  # noqa: E402

SCRIPT = REPO / "scripts" / "hosts.py"
HOSTS = ("host-a", "host-b", "host-c")


@pytest.fixture
def namespaces() -> None:
    """Skip (fail in CI) where namespace-hosts cannot be made."""
    reason = hosts_net.unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but namespace-hosts cannot be made: {reason}")
        pytest.skip(f"namespace-hosts cannot be made here: {reason}")


def start_script(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "hosts.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            cwd=REPO,
            env=_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    return proc, out


def finish(proc: subprocess.Popen[str]) -> None:
    """End the script if it still runs (SIGTERM: it removes what it made), by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def leftovers() -> dict[str, list[str]]:
    """What a run could leave: namespaces, links, forwarders, processes, schemas and roles."""
    import psycopg

    netns = [n for n in hosts_net.sh("ip", "netns", "list").stdout.split() if n.startswith(hosts_net.NETNS_PREFIX)]
    links = re.findall(r"\d+: (jqh\d+[rh])[@:]", hosts_net.sh("ip", "-o", "link", "show").stdout)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'jobq_hosts_%'")]
        roles = [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'jobq_hosts_%'")]
    return {
        "netns": netns,
        "links": links,
        "forwarders": [str(p) for p in hosts_net._forwarder_pids()],
        "schemas": schemas,
        "roles": roles,
    }


def nothing_left() -> dict[str, list[str]]:
    return {"netns": [], "links": [], "forwarders": [], "schemas": [], "roles": []}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def runs_of(run_dir: Path, host: str) -> list[tuple[int, int, str, float]]:
    path = run_dir / host / "tmp" / "jobq-hosts-runs.log"
    out = []
    for line in path.read_text().splitlines():
        job_id, attempt, name, at, _pid = line.split()
        out.append((int(job_id), int(attempt), name, float(at)))
    return out


@pytest.mark.timeout(150)
@pytest.mark.parametrize("hostname", [None, "jobq-host"], ids=["own host names", "one host name"])
def test_three_hosts_run_3000_jobs_exactly_once_across_a_link_cut(
    hostname: str | None, namespaces: None, pg_url: str, tmp_path: Path
) -> None:
    """One host name for all three (containers often have that) but each its own /tmp: they
    must still not take each other's supervisors for dead (issue 9, fault 5)."""
    run_dir, summary_path = tmp_path / "run", tmp_path / "summary.json"
    proc, out = start_script(
        tmp_path,
        "--db",
        pg_url,
        "--run-dir",
        str(run_dir),
        "--json",
        str(summary_path),
        "--throughput-jobs",
        "2000",
        "--throughput-repeats",
        "1",
        "--throughput-work-jobs",
        "0",
        *(["--hostname", hostname] if hostname else []),
    )
    try:
        code = proc.wait(timeout=130)
    finally:
        finish(proc)
    output = out.read_text()
    assert code == 0 and output.splitlines()[-1] == "hosts: ok", output
    assert leftovers() == nothing_left()
    summary = json.loads(summary_path.read_text())
    assert summary["problems"] == []

    # The run's own record of every execution, read here from each host's own /tmp.
    runs = {host: runs_of(run_dir, host) for host in HOSTS}
    for host, lines in runs.items():
        assert lines, f"{host} ran nothing"
        assert {name for _, _, name, _ in lines} == {hostname or host}  # the host name it was given (UTS namespace)
    for host in HOSTS:  # nobody took a supervisor on another host for dead
        assert "is dead" not in (run_dir / host / "supervisor.log").read_text()
    executions = Counter(job_id for lines in runs.values() for job_id, *_ in lines)
    job_ids = summary["job_ids"]
    assert len(job_ids) == 3000 and set(executions) == set(job_ids)  # every job ran; nothing else did
    in_flight = set(summary["in_flight"])
    twice = {j for j, n in executions.items() if n > 1}
    assert in_flight and twice <= in_flight and max(executions.values()) == 2, (in_flight, twice)
    assert sum(executions.values()) == 3000 + len(twice)
    # The cut host's late finishes were refused, only for jobs it held at the cut...
    assert summary["fenced"] and set(summary["fenced"]) <= in_flight
    # ...and after the link came back it went on with new jobs.
    after = [j for j, _, _, at in runs["host-c"] if at > summary["restored_at"] and j not in in_flight]
    assert after
    during = [j for j, _, _, at in runs["host-c"] if summary["cut_at"] + 0.5 < at < summary["restored_at"] and j not in in_flight]
    assert during == []  # cut off, it ran nothing new (it could claim nothing)
    assert sorted(summary["throughput"]) == ["1", "2", "3"] and all(v > 0 for v in summary["throughput"].values())
    assert re.search(r"throughput: 1 host: \d+ no-op jobs/s", output)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_an_interrupted_run_leaves_nothing_behind(sig: str, namespaces: None, pg_url: str, tmp_path: Path) -> None:
    """SIGTERM: the script removes what it made. SIGKILL (a crash): the next run, or
    ``--clean``, removes the leftovers by name, and kills what still runs there by pid."""
    proc, out = start_script(tmp_path, "--db", PG_URL, "--run-dir", str(tmp_path / "run"), "--throughput-jobs", "0")
    try:
        pids: list[str] = wait_for(  # type: ignore[assignment]
            lambda: len(p := re.findall(r"supervisor \w+ \(pid (\d+)\)", out.read_text())) == 3 and p,
            timeout=60,
            what="three hosts up",
        )
        made = leftovers()
        assert len(made["netns"]) == 3 and len(made["links"]) == 3 and len(made["forwarders"]) >= 3
        assert len(made["schemas"]) == 1 and len(made["roles"]) == 1
        proc.send_signal(getattr(signal, sig))
        code = proc.wait(timeout=40)
        assert code != 0
        if sig == "SIGKILL":
            assert all(alive(int(p)) for p in pids)  # the crash left the supervisors running
            clean = subprocess.run(
                [sys.executable, str(SCRIPT), "--clean"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60
            )
            assert clean.returncode == 0, clean.stderr
        else:
            assert "KeyboardInterrupt" in out.read_text() and "hosts: FAILED" in out.read_text()
        wait_for(lambda: not any(alive(int(p)) for p in pids), timeout=10, what="the supervisors to be gone")
        assert leftovers() == nothing_left()
    finally:
        finish(proc)
        if proc.returncode is not None and sig == "SIGKILL":
            subprocess.run([sys.executable, str(SCRIPT), "--clean"], cwd=REPO, env=_env(), capture_output=True, timeout=60)
