"""Partitions, rates and per-partition caps on the dashboard's queue page, in its API and in
/metrics (issue 17), against a real `jobq dashboard` on loopback: the top partitions only,
the rest summed, so the number of label values stays bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobq
from jobq.ops.monitor import OTHER_PARTITIONS, PARTITION_TOP
from tests.dashboard_util import DashboardServer, require_dashboard_libs

pytestmark = pytest.mark.timeout(120)


def test_top_partitions_are_shown_and_the_rest_summed(tmp_path: Path) -> None:
    require_dashboard_libs()
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db)
    for p in range(25):  # tenant-00 has 25 jobs, tenant-24 one: a clear ranking
        q.submit_many("tests.tasks:add", [(i,) for i in range(25 - p)], queue="tenants", partition=f"tenant-{p:02d}")
    q.set_queue_rate("tenants", 30, 60)
    q.set_queue_limit("tenants", per_partition=2)
    server = DashboardServer(db, tmp_path / "dashboard.log", "--token", "t0ken")
    auth = {"Authorization": "Bearer t0ken"}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for field, value in (("cpus", 0), ("memory_mb", -1), ("partition", "")):
                r = client.post("/api/v1/jobs", json={"target": "tests.tasks:add", field: value}, headers=auth)
                assert r.status_code == 422 and r.json()["field"] == field, r.text
            r = client.post(
                "/api/v1/jobs", json={"target": "tests.tasks:add", "queue": "api", "partition": "t9", "cpus": 2}, headers=auth
            )
            assert r.status_code == 201
            assert (q.record(r.json()["id"]).partition, q.record(r.json()["id"]).cpus) == ("t9", 2)
            (row,) = [r for r in client.get("/api/v1/queues").json()["queues"] if r["name"] == "tenants"]
            assert (row["rate"], row["per_partition"]) == ("30/m", 2)
            names = [p["partition"] for p in row["partitions"]]
            assert names == [f"tenant-{p:02d}" for p in range(PARTITION_TOP)] + [OTHER_PARTITIONS]
            assert row["partitions"][0] == {"partition": "tenant-00", "queued": 25, "running": 0}
            assert row["partitions"][-1]["queued"] == sum(25 - p for p in range(PARTITION_TOP, 25))
            page = client.get("/queues").text
            assert 'data-partition="tenant-00"' in page and "30/m" in page and 'data-partition="tenant-24"' not in page
            samples = [
                s
                for family in text_string_to_metric_families(client.get("/metrics").text)
                for s in family.samples
                if s.name == "jobq_partition_jobs" and s.labels["queue"] == "tenants"
            ]
            assert {s.labels["partition"] for s in samples} == set(names)  # bounded: 10 + 1 values
            queued = {s.labels["partition"]: s.value for s in samples if s.labels["state"] == "queued"}
            assert queued["tenant-00"] == 25 and sum(queued.values()) == sum(range(1, 26))
    finally:
        server.stop()
