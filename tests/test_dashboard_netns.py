"""The dashboard beyond loopback, over real HTTP: `jobq dashboard` runs in a network namespace
bound to the address of its end of a veth pair (as scripts/hosts_net.py makes them), and the
test reaches it from the root namespace. Every route answers 401 without credentials and 2xx
with them. Needs root, iproute2 and util-linux: skipped with the reason elsewhere, a failure in
CI (``CI=true``)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobq
from tests.conftest import REPO, Processes
from tests.dashboard_util import DashboardServer, require_dashboard_libs

sys.path.insert(0, str(REPO / "scripts"))
import hosts_net  # noqa: E402

TOKEN = "netns-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Veth:
    """A network namespace joined to the root one by a veth pair in a /29 of its own: the root
    end has ``.1`` and ``.3`` (two client addresses), the namespace end ``.2`` (names carry
    this process's pid: runs never collide)."""

    def __init__(self) -> None:
        n = os.getpid() % 60000
        self.netns = f"jobq-dash-{n}"
        self.veth_root, self.veth_ns = f"jqd{n}r", f"jqd{n}n"
        net = f"10.233.{n // 32 % 250}."
        first = (n % 32) * 8
        self.root_addr, self.ns_addr, self.other_addr = (f"{net}{first + k}" for k in (1, 2, 3))

    @staticmethod
    def clean_leftovers() -> None:
        """Remove the namespaces and links of runs whose test process is gone (a SIGKILLed run)."""
        for line in hosts_net.sh("ip", "netns", "list").stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            m = re.fullmatch(r"jobq-dash-(\d+)", name)
            if m and not any(int(pid) % 60000 == int(m.group(1)) for pid in os.listdir("/proc") if pid.isdigit()):
                Veth.destroy_names(name, f"jqd{m.group(1)}r")

    @staticmethod
    def destroy_names(netns: str, veth_root: str) -> None:
        for pid in hosts_net.sh("ip", "netns", "pids", netns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        hosts_net.sh("ip", "netns", "del", netns, check=False)
        hosts_net.sh("ip", "link", "del", veth_root, check=False)

    def create(self) -> None:
        sh = hosts_net.sh
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_ns, "netns", self.netns)
        sh("ip", "addr", "add", f"{self.root_addr}/29", "dev", self.veth_root)
        sh("ip", "addr", "add", f"{self.other_addr}/29", "dev", self.veth_root)
        sh("ip", "link", "set", self.veth_root, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.ns_addr}/29", "dev", self.veth_ns)
        sh("ip", "-n", self.netns, "link", "set", self.veth_ns, "up")

    def destroy(self) -> None:
        self.destroy_names(self.netns, self.veth_root)


@pytest.fixture(scope="module")
def veth() -> Iterator[Veth]:
    require_dashboard_libs()
    reason = hosts_net.unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but a network namespace cannot be made: {reason}")
        pytest.skip(f"a network namespace cannot be made here: {reason}")
    Veth.clean_leftovers()
    v = Veth()
    try:
        v.create()
        yield v
    finally:
        v.destroy()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, veth: Veth) -> Iterator[dict[str, Any]]:
    """A writable dashboard with an allow-list on the namespace's address, a supervisor, and
    one job of each kind the routes need."""
    import httpx

    tmp = tmp_path_factory.mktemp("dash_netns")
    db = str(tmp / "jobs.db")
    q = jobq.Queue(db)
    procs = Processes(tmp)
    server = None
    try:
        procs.supervisor(db, "-c", "1", "--allow", "tests.tasks")
        done = q.submit("tests.tasks:add", (1,))
        assert done.join(timeout=30) == 2
        group = q.map("tests.tasks:add", [1, 2])
        group.join(timeout=30)
        q.schedule("nightly", "tests.tasks:add", args=(1,), every="1h")
        args = ("--host", veth.ns_addr, "--token", TOKEN, "--allow", "tests.tasks")
        server = DashboardServer(db, tmp / "dashboard.log", *args, prefix=("ip", "netns", "exec", veth.netns))
        assert server.url.startswith(f"http://{veth.ns_addr}:")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield {"q": q, "db": db, "client": client, "done": done, "group": group, "tmp": tmp, "veth": veth}
    finally:
        if server is not None:
            server.stop()
        procs.cleanup()


def every_route() -> set[tuple[str, str]]:
    """(method, path) of every route the dashboard serves, read from its routers."""
    from jobq.dashboard import login, metrics, pages, routes_api

    out = {("GET", "/api/v1/openapi.json")}
    for prefix, router in (("/api/v1", routes_api.router), ("", metrics.router), ("", login.router), ("", pages.router)):
        for route in router.routes:
            for method in getattr(route, "methods", ()) or ():
                if method != "HEAD":
                    out.add((method, prefix + route.path))
    return out


#: what each route is called with (path parameters filled in by the test); the login routes
#: are the way to get credentials and stay open
OPEN = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout")}


def calls(r: dict[str, Any]) -> dict[tuple[str, str], tuple[str, Any]]:
    q: jobq.Queue = r["q"]
    later = q.submit("tests.tasks:add", (5,), delay="1h")
    jid, gid = r["done"].id, r["group"].id
    return {
        ("GET", "/api/v1/openapi.json"): ("/api/v1/openapi.json", None),
        ("GET", "/api/v1/status"): ("/api/v1/status", None),
        ("GET", "/api/v1/overview"): ("/api/v1/overview", None),
        ("GET", "/api/v1/charts"): ("/api/v1/charts?range=24h", None),
        ("GET", "/api/v1/jobs"): ("/api/v1/jobs?contains=1", None),
        ("POST", "/api/v1/jobs"): ("/api/v1/jobs", {"target": "tests.tasks:add", "args": [2]}),
        ("GET", "/api/v1/jobs/{job_id}"): (f"/api/v1/jobs/{jid}", None),
        ("GET", "/api/v1/jobs/{job_id}/logs"): (f"/api/v1/jobs/{jid}/logs", None),
        ("POST", "/api/v1/jobs/{job_id}/cancel"): (f"/api/v1/jobs/{later.id}/cancel", {}),
        ("POST", "/api/v1/jobs/{job_id}/retry"): (f"/api/v1/jobs/{later.id}/retry", {}),
        ("POST", "/api/v1/jobs/bulk"): ("/api/v1/jobs/bulk", {"action": "cancel", "ids": [later.id]}),
        ("GET", "/api/v1/groups"): ("/api/v1/groups", None),
        ("GET", "/api/v1/groups/{group_id}"): (f"/api/v1/groups/{gid}", None),
        ("GET", "/api/v1/schedules"): ("/api/v1/schedules", None),
        ("POST", "/api/v1/schedules/{name}/run"): ("/api/v1/schedules/nightly/run", {}),
        ("POST", "/api/v1/schedules/{name}/pause"): ("/api/v1/schedules/nightly/pause", {}),
        ("POST", "/api/v1/schedules/{name}/resume"): ("/api/v1/schedules/nightly/resume", {}),
        ("GET", "/api/v1/queues"): ("/api/v1/queues", None),
        ("POST", "/api/v1/queues/{name}/pause"): ("/api/v1/queues/spare/pause", {}),
        ("POST", "/api/v1/queues/{name}/resume"): ("/api/v1/queues/spare/resume", {}),
        ("GET", "/metrics"): ("/metrics", None),
        ("GET", "/"): ("/?range=7d", None),
        ("GET", "/jobs"): ("/jobs?contains=1", None),
        ("GET", "/jobs/{job_id}"): (f"/jobs/{jid}", None),
        ("GET", "/groups"): ("/groups", None),
        ("GET", "/groups/{group_id}"): (f"/groups/{gid}", None),
        ("GET", "/schedules"): ("/schedules", None),
        ("GET", "/queues"): ("/queues", None),
    }


def test_every_route_is_401_without_credentials_and_2xx_with_them(remote: dict[str, Any]) -> None:
    client = remote["client"]
    table = calls(remote)
    assert every_route() - OPEN == set(table), "a route the test does not call (or one it calls that is gone)"
    before = remote["q"].store.count_jobs()
    for (method, _), (url, body) in sorted(table.items()):
        r = client.request(method, url, json=body)
        assert r.status_code == 401, (method, url, r.status_code, r.text[:200])
        assert r.headers["www-authenticate"].startswith("Bearer")
        if url.startswith("/api/") or url == "/metrics":
            assert "error" in r.json()
        else:
            assert 'name="token"' in r.text  # the login form, never the page
        assert "content-security-policy" in r.headers
    assert remote["q"].store.count_jobs() == before  # nothing was written
    for (method, _), (url, body) in sorted(table.items()):
        r = client.request(method, url, json=body, headers=AUTH)
        assert 200 <= r.status_code < 300, (method, url, r.status_code, r.text[:300])


def test_a_browser_session_from_login_reads_the_pages(remote: dict[str, Any]) -> None:
    import httpx

    with httpx.Client(base_url=str(remote["client"].base_url), timeout=30) as browser:
        assert browser.get(f"/jobs/{remote['done'].id}").status_code == 401
        assert browser.get("/static/app.css").status_code == 200  # the package's assets, no data
        r = browser.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303 and "jobq_session" in r.headers["set-cookie"]
        r = browser.get(f"/jobs/{remote['done'].id}")
        assert r.status_code == 200 and 'id="job-state"' in r.text
        assert browser.get(f"/api/v1/jobs/{remote['done'].id}").json()["result"] == 2


def test_the_http_submit_honours_the_allow_list(remote: dict[str, Any]) -> None:
    client, q = remote["client"], remote["q"]
    before = q.store.count_jobs()
    for target in ("os:system", "subprocess:run", "tests.tasks_old:add"):
        r = client.post("/api/v1/jobs", json={"target": target, "args": ["true"]}, headers=AUTH)
        assert r.status_code == 422 and r.json()["field"] == "target", (target, r.text)
        assert "allowed" in r.json()["error"]
    assert q.store.count_jobs() == before
    # inside the prefix by its text, but walking into another module: the worker refuses it unimported
    r = client.post("/api/v1/jobs", json={"target": "tests.tasks:os.system", "args": ["true"], "check": False}, headers=AUTH)
    assert r.status_code == 201
    with pytest.raises(jobq.JobFailed) as failed:
        q.get(r.json()["id"]).join(timeout=30)
    assert failed.value.error_type == "TargetNotAllowed"
    r = client.post("/api/v1/jobs", json={"target": "tests.tasks:add", "args": [40]}, headers=AUTH)
    assert r.status_code == 201
    assert q.get(r.json()["id"]).join(timeout=30) == 41


def test_metrics_public_opens_metrics_alone(tmp_path: Path, veth: Veth) -> None:
    import httpx

    db = str(tmp_path / "jobs.db")
    jobq.Queue(db).submit("tests.tasks:add", (1,))
    args = ("--host", veth.ns_addr, "--token-file", str(_token_file(tmp_path)), "--read-only", "--metrics-public")
    server = DashboardServer(db, tmp_path / "dashboard.log", *args, prefix=("ip", "netns", "exec", veth.netns))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.get("/metrics")
            assert r.status_code == 200 and "jobq_jobs{" in r.text
            assert client.get("/api/v1/status").status_code == 401
            assert client.get("/api/v1/status", headers=AUTH).status_code == 200  # the token from the file
            r = client.post("/api/v1/jobs", json={"target": "tests.tasks:add"}, headers=AUTH)
            assert r.status_code == 403  # read-only
    finally:
        server.stop()


def test_failed_logins_are_limited_per_client_address(remote: dict[str, Any]) -> None:
    import httpx

    from jobq.dashboard.security import MAX_FAILURES

    veth: Veth = remote["veth"]
    url = str(remote["client"].base_url)
    transport = httpx.HTTPTransport(local_address=veth.other_addr)  # a second client address
    with httpx.Client(base_url=url, timeout=30, transport=transport) as guesser, httpx.Client(base_url=url, timeout=30) as user:
        for _ in range(MAX_FAILURES):
            assert guesser.post("/login", data={"token": "guess"}).status_code == 401
        r = guesser.post("/login", data={"token": TOKEN})  # even the right token, while held back
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        r = guesser.get("/api/v1/status", headers=AUTH)
        assert r.status_code == 429 and "too many failed logins" in r.json()["error"]
        assert user.get("/api/v1/status", headers=AUTH).status_code == 200  # another address is not held back
        r = user.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303


def _token_file(tmp: Path) -> Path:
    path = tmp / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path
