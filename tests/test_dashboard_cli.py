"""`jobq dashboard`'s flags (issue 19) and `jobq --version`, over real processes and real
HTTP on loopback: refusals are one line and exit 2 with no database made; the token comes
from --token, --token-file or JOBQ_DASHBOARD_TOKEN; bound beyond loopback every route needs
it even through 127.0.0.1; a non-JSON body is a 422 naming the body."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import jobq
from tests.conftest import run_cli
from tests.dashboard_util import DashboardServer, require_dashboard_libs

TOKEN = "cli-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _libs() -> None:
    require_dashboard_libs()


def _one_line_refusal(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    db = tmp_path / "x.db"
    proc = run_cli(str(db), "dashboard", "--port", "0", *args, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert not db.exists() and not Path(str(db) + "-jobq").exists()  # refused before anything was made
    return lines[0]


def test_off_loopback_a_writable_dashboard_needs_an_allow_list(tmp_path: Path) -> None:
    line = _one_line_refusal(tmp_path, "--host", "0.0.0.0", "--token", TOKEN)
    assert "without an allow-list" in line and "--allow" in line and "--read-only" in line
    line = _one_line_refusal(tmp_path, "--host", "0.0.0.0", "--token", TOKEN, env={"JOBQ_ALLOWED_TARGETS": ""})
    assert "allow-list" in line
    line = _one_line_refusal(tmp_path, "--host", "0.0.0.0")
    assert "without a token" in line and "--token-file" in line
    line = _one_line_refusal(tmp_path, "--token", TOKEN, "--token-file", str(tmp_path / "t"))
    assert "give one" in line
    line = _one_line_refusal(tmp_path, "--host", "0.0.0.0", "--token-file", str(tmp_path / "missing"), "--read-only")
    assert "token-file" in line and "missing" in line
    (tmp_path / "empty").write_text("\n")
    line = _one_line_refusal(tmp_path, "--host", "0.0.0.0", "--token-file", str(tmp_path / "empty"), "--read-only")
    assert "holds no token" in line
    line = _one_line_refusal(tmp_path, "--allow", "not a prefix!")
    assert line.startswith("Error: --allow")


@pytest.mark.parametrize(
    ("how", "env"),
    [(("--allow", "tests.tasks"), {}), (("--read-only",), {}), (("--allow", "tests"), {"JOBQ_DASHBOARD_TOKEN": TOKEN})],
)
def test_bound_beyond_loopback_every_read_needs_the_token_even_through_loopback(
    tmp_path: Path, how: tuple[str, ...], env: dict[str, str]
) -> None:
    import httpx

    db = str(tmp_path / "jobs.db")
    job = jobq.Queue(db).submit("tests.tasks:add", (1,), delay="1h")
    token_args = () if env else ("--token-file", str(_token_file(tmp_path)))
    server = DashboardServer(db, tmp_path / "dashboard.log", "--host", "0.0.0.0", *token_args, *how, env=env)
    try:
        port = server.url.rsplit(":", 1)[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for path in ("/", f"/jobs/{job.id}", f"/api/v1/jobs/{job.id}", f"/api/v1/jobs/{job.id}/logs", "/metrics"):
                assert client.get(path).status_code == 401, path
                assert client.get(path, headers=AUTH).status_code == 200, path
            r = client.post("/api/v1/jobs", json={"target": "os:system", "args": ["true"]}, headers=AUTH)
            assert r.status_code == (403 if "--read-only" in how else 422)
    finally:
        server.stop()
    assert len(jobq.Queue(db).list(limit=10)) == 1


def test_on_loopback_reads_stay_open_and_the_token_file_guards_writes(tmp_path: Path) -> None:
    import httpx

    db = str(tmp_path / "jobs.db")
    server = DashboardServer(db, tmp_path / "dashboard.log", "--token-file", str(_token_file(tmp_path)), "--allow", "tests.tasks")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/api/v1/status").status_code == 200  # loopback: today's behaviour
            assert client.post("/api/v1/jobs", json={"target": "tests.tasks:add"}).status_code == 401
            r = client.post("/api/v1/jobs", json={"target": "os:system", "args": ["true"]}, headers=AUTH)
            assert r.status_code == 422 and r.json()["field"] == "target"
            r = client.post("/api/v1/jobs", json={"target": "tests.tasks:add", "args": [1]}, headers=AUTH)
            assert r.status_code == 201
            for body, headers in ((b"{not json", {"content-type": "application/json"}), (b"[1, 2", {})):
                for url in ("/api/v1/jobs", "/api/v1/jobs/bulk"):
                    r = client.post(url, content=body, headers={**AUTH, **headers})
                    assert r.status_code == 422 and r.json() == {"error": "body: not valid JSON", "field": "body"}, r.text
            r = client.post("/api/v1/jobs", json={"target": "tests.tasks:add", "args": [1], "retries": "x"}, headers=AUTH)
            assert r.status_code == 422 and r.json()["field"] == "retries"
            r = client.get("/api/v1/jobs?limit=x")
            assert r.status_code == 422 and r.json()["field"] == "limit"
            r = client.get("/api/v1/charts?range=2d")
            assert r.status_code == 422 and r.json()["field"] == "range"
    finally:
        server.stop()
    assert len(jobq.Queue(db).list(limit=10)) == 1


def test_version_names_the_backend(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path / "x.db"), "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"jobq {jobq.__version__}, backend sqlite (SQLite {sqlite3.sqlite_version})"
    proc = run_cli("postgresql://postgres@127.0.0.1:5432/test", "--version")
    assert proc.stdout.strip() == f"jobq {jobq.__version__}, backend postgresql"
    assert not (tmp_path / "x.db").exists()


def _token_file(tmp: Path) -> Path:
    path = tmp / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def test_worker_start_refuses_a_writable_dashboard_beyond_loopback_without_an_allow_list(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    env = {"JOBQ_DASHBOARD_TOKEN": TOKEN}
    proc = run_cli(db, "worker", "start", "--burst", "--dashboard", "0.0.0.0:0", env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "without an allow-list" in line and "--allow PREFIX" in line
    proc = run_cli(db, "worker", "start", "--burst", "--allow", "tests.tasks", "--dashboard", "127.0.0.1:0", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
