"""config/grafana/jobq.json queries only what /metrics serves: every metric name and label in
its queries is read from a real scrape of a real dashboard over a database that real
supervisors worked on. config/prometheus.yml scrapes the same path with a bearer token file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

import jobq
from tests.conftest import REPO, Processes, wait_for
from tests.dashboard_util import DashboardServer, require_dashboard_libs

DASHBOARD = REPO / "config" / "grafana" / "jobq.json"
PROMETHEUS = REPO / "config" / "prometheus.yml"
TOKEN = "grafana-token"
_METRIC = re.compile(r"\b(jobq_[a-z_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(expression, legend) of every panel target and template variable query."""
    out = []
    for panel in doc["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        for t in panel["targets"]:
            out.append((t["expr"], t.get("legendFormat", "")))
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            out.append((var["definition"], ""))
    return out


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """Sample name -> label names, from /metrics after jobs of two queues ran (some failed),
    with a supervisor alive and a queue paused."""
    require_dashboard_libs()
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    tmp = tmp_path_factory.mktemp("grafana")
    db = str(tmp / "jobs.db")
    q = jobq.Queue(db)
    procs = Processes(tmp)
    server = None
    try:
        procs.supervisor(db, "-c", "2", "-q", "default", "-q", "other")
        jobs = [q.submit("tests.tasks:add", (i,)) for i in range(5)] + [q.submit("tests.tasks:fail", queue="other")]
        for j in jobs:
            wait_for(lambda j=j: j.state in ("succeeded", "failed"), timeout=30, what=f"job {j.id} to end")
        q.pause_queue("later")
        q.submit("tests.tasks:add", (1,), queue="later")
        q.submit("tests.tasks:add", (1,), queue="later", partition="tenant-1")  # per-partition counts
        server = DashboardServer(db, tmp / "dashboard.log", "--token", TOKEN)
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def samples() -> dict[str, set[str]] | None:
                text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
                out: dict[str, set[str]] = {}
                for family in text_string_to_metric_families(text):
                    for s in family.samples:
                        out.setdefault(s.name, set()).update(s.labels)
                # the histograms' figures are written once a second per process
                return out if "jobq_job_duration_seconds_bucket" in out and "jobq_workers_busy" in out else None

            yield wait_for(samples, timeout=30, what="a scrape with histograms and a live supervisor")  # type: ignore[misc]
    finally:
        if server is not None:
            server.stop()
        procs.cleanup()


def test_every_metric_and_label_the_grafana_dashboard_queries_is_scraped(scrape: dict[str, set[str]]) -> None:
    doc = json.loads(DASHBOARD.read_text())
    used = set()
    for expr, legend in queries(doc):
        found = _METRIC.findall(expr)
        assert found, f"no jobq metric in {expr!r}"
        labels_here: set[str] = set()
        for name, selector in found:
            used.add(name)
            assert name in scrape, f"{name} (in {expr!r}) is not in a real scrape: {sorted(scrape)}"
            labels_here |= scrape[name]
            for label in _MATCHER.findall(selector):
                assert label in scrape[name], f"{name} has no label {label!r} ({expr!r})"
        for group in _BY.findall(expr):
            for label in (x.strip() for x in group.split(",") if x.strip()):
                assert label in labels_here, f"by ({label}) over metrics without it: {expr!r}"
        for label in _LEGEND.findall(legend):
            assert label in labels_here, f"legend {{{{{label}}}}} names no label of {expr!r}"
    families = {re.sub(r"_(bucket|sum|count|total|info)$", "", n) for n in scrape if n.startswith("jobq_")}
    shown = {re.sub(r"_(bucket|sum|count|total|info)$", "", n) for n in used}
    assert families <= shown, f"metrics served but on no panel: {sorted(families - shown)}"


def test_the_grafana_dashboard_is_importable() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] == "jobq" and doc["schemaVersion"] >= 30
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
    names = {v["name"] for v in doc["templating"]["list"]}
    assert {"datasource", "queue"} <= names


def test_the_prometheus_example_scrapes_metrics_with_a_bearer_token_file() -> None:
    text = PROMETHEUS.read_text()
    assert re.search(r"^\s+metrics_path: /metrics\s*$", text, re.M)
    assert re.search(r"^\s+type: Bearer\s*$", text, re.M)
    assert re.search(r"^\s+credentials_file: \S+", text, re.M)
    assert re.search(r'^\s+- targets: \["[\w.-]+:8181"\]', text, re.M)
    assert "\t" not in text  # YAML indents with spaces


def test_config_files_are_where_the_readme_says() -> None:
    readme = (REPO / "README.md").read_text()
    assert "config/grafana/jobq.json" in readme and "config/prometheus.yml" in readme
