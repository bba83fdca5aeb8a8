"""Durable steps through the CLI, the HTTP API, /metrics and the dashboard's job page
(issue 16), against real processes: bad input gets one clear error and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import jobq
from tests.conftest import Processes, run_cli, wait_for
from tests.dashboard_util import DashboardServer, require_dashboard_libs

TOKEN = "steps-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def table(q: jobq.Queue) -> tuple[Any, ...]:
    """Everything a bad input must leave unchanged: events, steps, job states."""
    jobs = [(r.id, r.state, r.attempts) for r in q.list(limit=100)]
    steps = {r[0]: [(s.name, s.call, s.state) for s in q.steps(r[0])] for r in jobs}
    return tuple(q.events(limit=1000)), tuple(jobs), tuple(sorted(steps.items())), q.store.step_totals()


@pytest.mark.timeout(180)
def test_cli_sends_events_lists_steps_and_retries_from_a_step(queue: jobq.Queue, processes: Processes, tmp_path: Path) -> None:
    db = queue.path
    processes.supervisor(db, "-c", "1")
    waiter = queue.submit("tests.step_tasks:charge_then_wait", args=(str(tmp_path / "w"), "approval-9", None))
    wait_for(lambda: queue.waiting_for(waiter.id), 30, what="the job to wait")
    shown = run_cli(db, "status", str(waiter.id))
    assert shown.returncode == 0 and "waiting for:  event 'approval-9'" in shown.stdout, shown
    data = json.loads(run_cli(db, "status", str(waiter.id), "--json").stdout)
    assert data["waiting_for"] == "approval-9"
    assert [(s["name"], s["call"], s["state"], s["attempt"]) for s in data["steps"]] == [
        ("record_line", 1, "succeeded", 1),
        ("wait_for", 1, "waiting", 1),
    ]
    assert set(data["steps"][0]) >= {"name", "call", "state", "attempt", "started_at", "finished_at"}

    before = table(queue)
    for args, field in [
        (("event", "send", "k" * 201, "1"), "key"),
        (("event", "send", "approval-9", "{not json"), "payload"),
        (("event", "send", "approval-9", json.dumps("x" * 100_000)), "payload"),
        (("retry", "999999", "--from-step", "ship"), "999999"),
        (("retry", str(waiter.id), "--from-step", "nope"), "from_step"),
        (("status", "999999"), "999999"),
    ]:
        r = run_cli(db, *args, env={"JOBQ_MAX_PAYLOAD_BYTES": "50000"})
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and field in r.stderr, (args, r)
    assert table(queue) == before

    sent = run_cli(db, "event", "send", "approval-9", '{"ok": true}', "--json")
    assert sent.returncode == 0 and "event" in json.loads(sent.stdout)
    assert waiter.join(timeout=30) == {"ok": True}
    order = queue.submit("tests.step_tasks:order", args=(str(tmp_path / "o"),))
    order.join(timeout=30)
    again = run_cli(db, "retry", str(order.id), "--from-step", "reserve")
    assert again.returncode == 0 and again.stdout.split() == [str(order.id)], again
    order.join(timeout=30)
    assert (tmp_path / "o").read_text().split() == ["charge", "reserve", "ship", "reserve", "ship"]
    listed = run_cli(db, "status", str(order.id))
    assert "charge #1  succeeded" in listed.stdout and "ship #1  succeeded" in listed.stdout
    queue.send_event("orphan", None)
    assert [json.loads(x)["key"] for x in run_cli(db, "event", "list").stdout.splitlines()][0] == "orphan"
    purged = run_cli(db, "event", "purge", "--json")
    assert json.loads(purged.stdout) == {"purged": 2}


@pytest.mark.timeout(180)
def test_http_api_metrics_and_the_job_page(tmp_path: Path) -> None:
    require_dashboard_libs()
    import httpx

    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    procs = Processes(tmp_path)
    server = None
    try:
        procs.supervisor(db, "-c", "1")
        server = DashboardServer(db, tmp_path / "dashboard.log", "--token", TOKEN)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            waiter = q.submit("tests.step_tasks:charge_then_wait", args=(str(tmp_path / "w"), "http-key", None))
            wait_for(lambda: q.waiting_for(waiter.id), 30, what="the job to wait")
            body = client.get(f"/api/v1/jobs/{waiter.id}/steps").json()
            assert body["waiting_for"] == "http-key" and [s["name"] for s in body["steps"]] == ["record_line", "wait_for"]
            page = client.get(f"/jobs/{waiter.id}").text
            assert 'id="job-steps"' in page and "http-key" in page and "record_line" in page

            before = table(q)
            assert client.post("/api/v1/events/http-key", json={"ok": 1}).status_code in (401, 403)  # no token
            bad = client.post("/api/v1/events/" + "k" * 201, json=1, headers=AUTH)
            assert bad.status_code == 422 and bad.json()["field"] == "key"
            big = client.post("/api/v1/events/http-key", json="x" * 2_000_000, headers=AUTH)
            assert big.status_code == 422 and big.json()["field"] == "payload"
            assert client.get("/api/v1/jobs/999999/steps").status_code == 404
            nope = client.post(f"/api/v1/jobs/{waiter.id}/retry?from_step=nope", headers=AUTH)
            assert nope.status_code == 422 and nope.json()["field"] == "from_step"
            assert table(q) == before

            sent = client.post("/api/v1/events/http-key", json={"ok": 1}, headers=AUTH)
            assert sent.status_code == 201 and sent.json()["key"] == "http-key"
            assert waiter.join(timeout=30) == {"ok": 1}
            order = q.submit("tests.step_tasks:order", args=(str(tmp_path / "o"),))
            order.join(timeout=30)
            page = client.get(f"/jobs/{order.id}").text
            assert f"/api/v1/jobs/{order.id}/retry?from_step=ship" in page  # the page's button
            r = client.post(f"/api/v1/jobs/{order.id}/retry?from_step=ship", headers=AUTH)
            assert r.json() == {"requeued": [order.id]}
            order.join(timeout=30)
            metrics = client.get("/metrics").text
            run = next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("jobq_steps_run_total "))
            replayed = next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("jobq_steps_replayed_total "))
            assert run == 6 and replayed == 3  # 2 record_line, charge, reserve, ship, ship again; replays: 1 + 2
    finally:
        if server is not None:
            server.stop()
        procs.cleanup()
