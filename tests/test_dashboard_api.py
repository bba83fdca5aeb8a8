"""The dashboard's JSON HTTP API and /metrics, against a real `jobq dashboard` (uvicorn on an
ephemeral loopback port) and a real supervisor draining the jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobq
from tests.conftest import Processes, run_cli, wait_for
from tests.dashboard_util import DashboardServer, require_dashboard_libs

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_dashboard_libs()
    import httpx

    tmp = tmp_path_factory.mktemp("dash_api")
    db = str(tmp / "jobs.db")
    q = jobq.Queue(db)
    procs = Processes(tmp)
    server = None
    try:
        procs.supervisor(db, "-c", "2")
        server = DashboardServer(db, tmp / "dashboard.log", "--token", TOKEN)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield {"db": db, "q": q, "client": client, "server": server, "tmp": tmp, "procs": procs}
    finally:
        if server is not None:
            server.stop()
        procs.cleanup()


def done(client: Any, job_id: int, timeout: float = 30) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        record = client.get(f"/api/v1/jobs/{job_id}").json()
        return record if record["state"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(finished, timeout=timeout, what=f"job {job_id} to finish")  # type: ignore[return-value]


def submit(client: Any, **definition: Any) -> int:
    r = client.post("/api/v1/jobs", json=definition, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_submit_run_and_read_back_as_the_cli_prints(env: dict[str, Any]) -> None:
    client, db = env["client"], env["db"]
    job_id = submit(client, target="tests.tasks:add", args=[2, 3], queue="api", name="sum", retries=1, timeout=30)
    record = done(client, job_id)
    assert record["state"] == "succeeded" and record["result"] == 5
    cli = json.loads(run_cli(db, "status", str(job_id), "--json").stdout)
    assert record == cli
    shout = submit(client, target="tests.tasks:shout", args=[7])
    done(client, shout)
    logs = client.get(f"/api/v1/jobs/{shout}/logs")
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    assert "Worker: 7" in logs.text and "to stderr 7" in logs.text
    status = client.get("/api/v1/status").json()
    cli_status = json.loads(run_cli(db, "status", "--json").stdout)
    assert status["counts"] == cli_status["counts"] and status["queues"] == cli_status["queues"]
    assert [s["id"] for s in status["supervisors"]] == [s["id"] for s in cli_status["supervisors"]]


def test_bad_definitions_are_422_naming_the_field_and_store_nothing(env: dict[str, Any]) -> None:
    client, q = env["client"], env["q"]
    before = q.store.count_jobs()
    cases = [
        ({"args": [1]}, "target"),
        ({"target": "not a target"}, "target"),
        ({"target": "tests.tasks:nope"}, "target"),
        ({"target": "tests.tasks:add", "queue": "bad queue!"}, "queue"),
        ({"target": "tests.tasks:add", "args": {"x": 1}}, "args"),
        ({"target": "tests.tasks:add", "priority": "high"}, "priority"),
        ({"target": "tests.tasks:add", "retries": -1}, "retries"),
        ({"target": "tests.tasks:add", "delay": "soon"}, "delay"),
        ({"target": "tests.tasks:add", "run_at": "tomorrow"}, "run_at"),
        ({"target": "tests.tasks:add", "depends_on": [10**9]}, "depends_on"),
        ({"target": "tests.tasks:add", "colour": "red"}, "colour"),
        ({"target": "tests.tasks:add", "timeout": 0}, "timeout"),
    ]
    for definition, fieldname in cases:
        r = client.post("/api/v1/jobs", json=definition, headers=AUTH)
        assert r.status_code == 422, (definition, r.text)
        body = r.json()
        assert body["field"] == fieldname, (definition, body)
        assert body["error"]
    r = client.post("/api/v1/jobs", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"]
    r = client.post("/api/v1/jobs", json=[1, 2], headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert q.store.count_jobs() == before


def test_duplicate_key_answers_200_with_the_existing_id(env: dict[str, Any]) -> None:
    client = env["client"]
    first = client.post("/api/v1/jobs", json={"target": "tests.tasks:add", "args": [1], "key": "k1", "delay": "1h"}, headers=AUTH)
    assert first.status_code == 201
    again = client.post("/api/v1/jobs", json={"target": "tests.tasks:add", "args": [1], "key": "k1"}, headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.post(f"/api/v1/jobs/{first.json()['id']}/cancel", headers=AUTH).json()["state"] == "cancelled"


def test_writes_without_the_token_are_401_and_change_nothing(env: dict[str, Any]) -> None:
    client, q = env["client"], env["q"]
    waiting = q.submit("tests.tasks:add", (1,), delay="1h")
    failed = q.submit("tests.tasks:fail", queue="api")
    wait_for(lambda: failed.state == "failed", what="the failing job to fail")
    before = q.store.count_jobs()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"X-CSRF-Token": "x"}):
        assert client.post("/api/v1/jobs", json={"target": "tests.tasks:add"}, headers=headers).status_code == 401
        assert client.post(f"/api/v1/jobs/{waiting.id}/cancel", headers=headers).status_code == 401
        assert client.post(f"/api/v1/jobs/{failed.id}/retry", headers=headers).status_code == 401
        r = client.post("/api/v1/jobs/bulk", json={"action": "delete", "ids": [failed.id]}, headers=headers)
        assert r.status_code == 401 and "error" in r.json()
    assert q.store.count_jobs() == before
    assert waiting.state == "scheduled" and failed.state == "failed"
    # a session cookie without its CSRF token is not enough either
    page = client.get("/")
    assert page.status_code == 200
    assert client.post(f"/api/v1/jobs/{waiting.id}/cancel").status_code == 401
    waiting.cancel()


def test_read_only_dashboard_refuses_writes_with_403(env: dict[str, Any]) -> None:
    import httpx

    server = DashboardServer(env["db"], env["tmp"] / "ro.log", "--token", TOKEN, "--read-only")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            before = env["q"].store.count_jobs()
            r = c.post("/api/v1/jobs", json={"target": "tests.tasks:add"}, headers=AUTH)
            assert r.status_code == 403 and "read-only" in r.json()["error"]
            assert c.post("/api/v1/queues/api/pause", headers=AUTH).status_code == 403
            assert c.get("/api/v1/status").status_code == 200
            assert env["q"].store.count_jobs() == before
    finally:
        server.stop()


def test_unknown_ids_are_404_with_an_error(env: dict[str, Any]) -> None:
    client = env["client"]
    for path in ("/api/v1/jobs/999999999", "/api/v1/jobs/999999999/logs", "/api/v1/groups/g999999", "/api/v1/jobs/abc"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.json(), (path, r.text)
    assert client.post("/api/v1/jobs/999999999/cancel", headers=AUTH).status_code == 404
    assert client.post("/api/v1/schedules/nope/run", headers=AUTH).status_code == 404


def test_jobs_pages_by_cursor_and_filters(env: dict[str, Any]) -> None:
    client, q = env["client"], env["q"]
    ids = [j.id for j in q.submit_many("tests.tasks:add", [(i,) for i in range(25)], queue="paging", name="p")]
    q.submit("tests.tasks:echo", queue="paging", name="odd one")
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"queue": "paging", "name": "p", "limit": "10", **({"before": str(cursor)} if cursor else {})}
        body = client.get("/api/v1/jobs", params=params).json()
        pages += 1
        seen += [r["id"] for r in body["jobs"]]
        assert all(r["queue"] == "paging" and r["name"] == "p" for r in body["jobs"])
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3 and seen == sorted(ids, reverse=True)
    one = client.get("/api/v1/jobs", params={"target": "tests.tasks:echo", "queue": "paging"}).json()
    assert [r["name"] for r in one["jobs"]] == ["odd one"] and one["next"] is None
    assert set(one["jobs"][0]) >= {"id", "state", "args", "result", "error", "created_at"}
    for params, fieldname in (({"state": "lost"}, "state"), ({"limit": "0"}, "limit"), ({"before": "x"}, "before")):
        r = client.get("/api/v1/jobs", params=params)
        assert r.status_code == 422 and r.json()["field"] == fieldname


def test_cancel_and_retry_through_the_api(env: dict[str, Any]) -> None:
    client, tmp = env["client"], env["tmp"]
    running = submit(client, target="tests.tasks:sleep", args=[60], queue="api")
    wait_for(lambda: client.get(f"/api/v1/jobs/{running}").json()["state"] == "running", what="the sleeper to start")
    assert client.post(f"/api/v1/jobs/{running}/cancel", headers=AUTH).json()["state"] == "cancelling"
    assert done(client, running)["state"] == "cancelled"
    flaky = submit(client, target="tests.tasks:flaky", args=[str(tmp / "flaky"), 1], queue="api")
    assert done(client, flaky)["state"] == "failed"
    assert client.post(f"/api/v1/jobs/{flaky}/retry", headers=AUTH).json() == {"requeued": [flaky]}
    record = done(client, flaky)
    assert record["state"] == "succeeded" and [e["attempt"] for e in record["errors"]] == [1]
    after = submit(client, target="tests.tasks:add", args=[1], depends_on=[flaky], queue="api")
    assert done(client, after)["depends_on"] == [flaky]
    listed = client.get("/api/v1/jobs", params={"queue": "api", "limit": "500"}).json()["jobs"]
    by_id = {r["id"]: r for r in listed}
    # A listed job is its record; one job's own read adds its durable steps (issue 16).
    assert by_id[flaky] == {k: v for k, v in record.items() if k not in ("steps", "waiting_for")}
    after_record = client.get(f"/api/v1/jobs/{after}").json()
    assert after_record["steps"] == [] and after_record["waiting_for"] is None
    assert by_id[after] == {k: v for k, v in after_record.items() if k not in ("steps", "waiting_for")}
    bulk = client.post("/api/v1/jobs/bulk", json={"action": "delete", "ids": [flaky, running, after]}, headers=AUTH)
    assert bulk.status_code == 200 and sorted(bulk.json()["done"]) == sorted([flaky, running, after])
    assert client.get(f"/api/v1/jobs/{flaky}").status_code == 404


def test_groups_and_schedules(env: dict[str, Any]) -> None:
    client, q = env["client"], env["q"]
    group = q.map("tests.tasks:square", range(6), queue="api")
    group.join(timeout=30)
    g = client.get(f"/api/v1/groups/{group.id}").json()
    assert (g["done"], g["total"], g["failed"]) == (6, 6, [])
    q.schedule("hourly-add", "tests.tasks:add", (40, 2), every="1h")
    names = [s["name"] for s in client.get("/api/v1/schedules").json()["schedules"]]
    assert "hourly-add" in names
    r = client.post("/api/v1/schedules/hourly-add/run", headers=AUTH)
    assert r.status_code == 201
    assert done(client, r.json()["id"])["result"] == 42


def test_openapi_document(env: dict[str, Any]) -> None:
    doc = env["client"].get("/api/v1/openapi.json").json()
    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/logs", "/api/v1/status", "/api/v1/queues"):
        assert path in doc["paths"], path


def _metrics(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            assert not {"id", "job", "job_id"} & set(sample.labels), sample
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_across_restarts_purges_and_retries(env: dict[str, Any]) -> None:
    import httpx

    client, q, tmp = env["client"], env["q"], env["tmp"]
    ok = [q.submit("tests.tasks:add", (i,), queue="metrics") for i in range(4)]
    bad = q.submit("tests.tasks:flaky", (str(tmp / "flaky-metrics"), 1), queue="metrics")
    for job in ok:
        job.join(timeout=30)
    wait_for(lambda: bad.state == "failed", what="the flaky job to fail")
    # A worker writes the figures it booked once it has had nothing to run for 50 ms.
    duration_count = ("jobq_job_duration_seconds_count", (("queue", "metrics"),))
    wait_for(lambda: _metrics(client).get(duration_count) == 5, what="the run-time histogram of the 5 jobs")
    m = _metrics(client)
    assert m[("jobq_jobs_submitted_total", (("queue", "metrics"),))] == 5
    assert m[("jobq_jobs_finished_total", (("outcome", "succeeded"), ("queue", "metrics")))] == 4
    assert m[("jobq_jobs_finished_total", (("outcome", "failed"), ("queue", "metrics")))] == 1
    assert m[("jobq_jobs", (("queue", "metrics"), ("state", "succeeded")))] == 4
    assert m[("jobq_job_duration_seconds_count", (("queue", "metrics"),))] == 5
    assert m[("jobq_job_wait_seconds_count", (("queue", "metrics"),))] == 5
    assert m[("jobq_job_duration_seconds_bucket", (("le", "+Inf"), ("queue", "metrics")))] == 5
    assert m[("jobq_queue_paused", (("queue", "metrics"),))] == 0
    assert ("jobq_queue_oldest_age_seconds", (("queue", "metrics"),)) in m
    assert any(k[0] == "jobq_build_info" and ("backend", "sqlite") in k[1] for k in m)
    sups = [k for k in m if k[0] == "jobq_supervisor_heartbeat_timestamp_seconds"]
    assert len(sups) == 1 and any(k[0] == "jobq_workers_busy" for k in m)
    # retry the failure, purge everything finished, a new dashboard process: never a step back
    q.retry(bad.id)
    assert bad.join(timeout=30) == 2
    assert q.purge(older_than=0) >= 5
    server = DashboardServer(env["db"], tmp / "restarted.log", "--token", TOKEN)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as fresh:
            m2 = _metrics(fresh)
    finally:
        server.stop()
    assert m2[("jobq_jobs_submitted_total", (("queue", "metrics"),))] == 5
    assert m2[("jobq_jobs_finished_total", (("outcome", "succeeded"), ("queue", "metrics")))] == 5
    assert m2[("jobq_jobs_finished_total", (("outcome", "failed"), ("queue", "metrics")))] == 1
    assert m2[("jobq_job_duration_seconds_count", (("queue", "metrics"),))] == 6
    assert m2.get(("jobq_jobs", (("queue", "metrics"), ("state", "succeeded"))), 0) == 0


def test_dashboard_without_its_extra_exits_2_with_the_pip_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO, _env

    code = (
        "import sys, importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda n, *a: None if n == 'fastapi' else real(n, *a)\n"
        "from jobq.cli import main; sys.argv = ['jobq', '--db', sys.argv[1], 'dashboard']; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.db")], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["Error: the dashboard needs fastapi: pip install 'jobq[dashboard]'"]


def test_non_loopback_bind_without_a_token_is_refused(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path / "x.db"), "dashboard", "--host", "0.0.0.0", "--port", "0")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "without a token" in proc.stderr


def test_pause_and_resume_a_queue(env: dict[str, Any]) -> None:
    client, q = env["client"], env["q"]
    r = client.post("/api/v1/queues/held/pause", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"queue": "held", "paused": True}
    jobs = [q.submit("tests.tasks:add", (i,), queue="held") for i in range(3)]
    assert q.submit("tests.tasks:add", (9,), queue="api").join(timeout=30) == 10  # another queue runs
    assert {j.state for j in jobs} == {"queued"}
    rows = {row["name"]: row for row in client.get("/api/v1/queues").json()["queues"]}
    assert rows["held"]["paused"] is True and rows["held"]["counts"]["queued"] == 3
    assert _metrics(client)[("jobq_queue_paused", (("queue", "held"),))] == 1
    assert client.post("/api/v1/queues/bad name/pause", headers=AUTH).json()["field"] == "queue"
    assert client.post("/api/v1/queues/held/resume", headers=AUTH).json()["paused"] is False
    assert [j.join(timeout=30) for j in jobs] == [1, 2, 3]


def test_worker_start_serves_the_dashboard_from_a_child(tmp_path: Path, processes: Processes) -> None:
    import os
    import re
    import signal

    import httpx

    db = str(tmp_path / "jobs.db")
    sup = processes.supervisor(db, "-c", "1", "--dashboard", "127.0.0.1:0")
    log = sup.log_path  # type: ignore[attr-defined]
    url = wait_for(lambda: (m := re.search(r"jobq dashboard: (http://\S+)", log.read_text())) and m.group(1), what="the URL")
    job = jobq.Queue(db).submit("tests.tasks:add", (1, 2))
    assert job.join(timeout=30) == 3
    status = httpx.get(f"{url}api/v1/status", timeout=10).json()
    assert [s["pid"] for s in status["supervisors"]] == [sup.pid]
    children = [int(p) for p in open(f"/proc/{sup.pid}/task/{sup.pid}/children").read().split()]
    dash = [p for p in children if "jobq-dashboard" in open(f"/proc/{p}/comm").read()]
    assert len(dash) == 1
    os.kill(sup.pid, signal.SIGTERM)
    assert sup.wait(timeout=30) == 0
    wait_for(lambda: not os.path.exists(f"/proc/{dash[0]}"), what="the dashboard child to end")


def test_pause_and_resume_a_schedule(env: dict[str, Any]) -> None:
    import time

    client, q = env["client"], env["q"]
    q.schedule("every-second", "tests.tasks:add", (1, 1), every="1s", queue="sched")

    def runs() -> int:
        return len(client.get("/api/v1/jobs", params={"name": "every-second", "limit": "500"}).json()["jobs"])

    wait_for(lambda: runs() >= 1, what="the schedule's first run")
    r = client.post("/api/v1/schedules/every-second/pause", headers=AUTH)
    assert r.status_code == 200 and r.json()["paused"] is True
    row = next(s for s in client.get("/api/v1/schedules").json()["schedules"] if s["name"] == "every-second")
    assert row["paused"] is True and row["next_run_at"] is None
    q.schedule("every-second", "tests.tasks:add", (1, 2), every="1s", queue="sched")  # a changed definition stays paused
    paused_at = runs()
    time.sleep(2.5)  # two and a half periods: a running schedule would have enqueued twice
    assert runs() == paused_at
    assert client.post("/api/v1/schedules/every-second/resume", headers=AUTH).json()["paused"] is False
    wait_for(lambda: runs() > paused_at, what="a run after resume")
    assert client.post("/api/v1/schedules/nope/pause", headers=AUTH).status_code == 404
    assert client.post("/api/v1/schedules/every-second/pause").status_code == 401
