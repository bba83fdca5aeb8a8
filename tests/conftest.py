"""Shared fixtures: real files in tmp_path, real processes, cleaned up by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq.store import open_store
from jobq.store.base import Store

REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def failure_of(job: jobq.Job, timeout: float = 60) -> jobq.JobFailed:
    """The :class:`jobq.JobFailed` that joining ``job`` raises (fails the test otherwise)."""
    with pytest.raises(jobq.JobFailed) as info:
        job.join(timeout=timeout)
    return info.value


def states(q: jobq.Queue) -> dict[str, int]:
    """The non-zero counts by state."""
    return {k: v for k, v in q.status()["counts"].items() if v}


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


@pytest.fixture
def queue(db_path: str) -> jobq.Queue:
    return jobq.Queue(db_path)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("JOBQ_CONFIG", None)
    return env


def run_cli(
    db: str, *args: str, timeout: float = 60, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jobq --db DB ARGS...`` from the repository root (``env`` added)."""
    return subprocess.run(
        [sys.executable, "-m", "jobq", "--db", db, *args],
        cwd=REPO,
        env={**_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


class Processes:
    """Starts supervisors as real processes; kills every one (and its group) at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[str]] = []

    def supervisor(
        self, db: str, *args: str, log_name: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """``jobq --db DB worker start ARGS`` in a session (process group) of its own;
        ``env`` adds to (or, with None values, removes from) the environment."""
        log = self.tmp_path / (log_name or f"supervisor-{len(self.procs)}.log")
        fh = open(log, "w")
        full_env = _env()
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobq", "--db", db, "worker", "start", *args],
            cwd=REPO,
            env=full_env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        proc.log_path = log  # type: ignore[attr-defined]
        fh.close()
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            for sig in (signal.SIGKILL,):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.cleanup()


# -- PostgreSQL ------------------------------------------------------------------------------
PG_URL = os.environ.get("JOBQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, str | None] = {}


def postgres_unavailable() -> str | None:
    """Why no PostgreSQL server can be used for tests (None when one answers)."""
    if "reason" not in _pg_state:
        try:
            import psycopg
        except ImportError:
            _pg_state["reason"] = "psycopg is not installed (pip install 'jobq[postgres]')"
        else:
            try:
                psycopg.connect(PG_URL, connect_timeout=3).close()
                _pg_state["reason"] = None
            except psycopg.Error as exc:
                _pg_state["reason"] = f"no PostgreSQL server answers at {PG_URL} ({str(exc).strip().splitlines()[0]})"
    return _pg_state["reason"]


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL with a schema of this test's own, dropped afterwards. Skips when no
    server answers, unless JOBQ_REQUIRE_POSTGRES=1 (CI), where that is a failure."""
    reason = postgres_unavailable()
    if reason:
        if os.environ.get("JOBQ_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"JOBQ_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    import uuid

    schema = f"jobq_test_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}schema={schema}"
    finally:
        _drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL of each backend in turn: the same test runs on both."""
    if request.param == "sqlite":
        return str(tmp_path / "jobs.db")
    return request.getfixturevalue("pg_url")


# -- the dashboard's browser tests (imports inside: tests.dashboard_util imports this module) --
def _no_browser(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (the dashboard's browser tests)."""
    from tests.dashboard_util import CHROMIUM, LIVE, require_dashboard_libs

    require_dashboard_libs()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install -e '.[test]')")
    expect.set_options(timeout=LIVE)
    if not os.path.exists(CHROMIUM):
        _no_browser(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    except Exception as exc:  # any launch failure means: no browser here
        pw.stop()
        _no_browser(f"cannot start {CHROMIUM}: {str(exc).splitlines()[0]}")
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[dict[str, Any]]:
    """A real `jobq dashboard` with a token and a supervisor of queues default and other."""
    from tests.dashboard_util import TOKEN, DashboardServer

    tmp = tmp_path_factory.mktemp("dash_browser")
    db = str(tmp / "jobs.db")
    procs = Processes(tmp)
    server = None
    try:
        procs.supervisor(db, "-c", "2", "-q", "default", "-q", "other")
        server = DashboardServer(db, tmp / "dashboard.log", "--token", TOKEN)
        yield {"db": db, "q": jobq.Queue(db), "url": server.url, "procs": procs, "tmp": tmp}
    finally:
        if server is not None:
            server.stop()
        procs.cleanup()


@pytest.fixture
def page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    """A logged-in page; fails the test if any dialog opens or anything loads from elsewhere."""
    from tests.dashboard_util import LIVE, TOKEN

    context = browser.new_context(base_url=site["url"])
    p = context.new_page()
    p.set_default_timeout(LIVE)
    dialogs: list[str] = []
    foreign: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    p.on("request", lambda r: None if r.url.startswith(site["url"]) else foreign.append(r.url))
    p.goto("/login")
    p.fill("input[name=token]", TOKEN)
    p.click("button[type=submit]")
    p.wait_for_url(site["url"] + "/")
    try:
        yield p
    finally:
        context.close()
    assert dialogs == [], f"a dialog opened: {dialogs}"
    assert foreign == [], f"requests beyond the dashboard: {foreign}"


# -- store instances on any_db (the store contract and flow suites) ----------------------------


@pytest.fixture
def opened(any_db: str) -> Iterator[Callable[[], Store]]:
    """Opens more store instances on the same database; closes them all afterwards."""
    stores: list[Store] = []

    def open_one() -> Store:
        stores.append(open_store(any_db))
        return stores[-1]

    yield open_one
    try:
        if stores:  # whatever the test did, every row obeys the state invariants (jobq.store.invariants)
            assert stores[0].invariant_violations() == []  # type: ignore[attr-defined]
    finally:
        for s in stores:
            s.close()


@pytest.fixture
def store(opened: Callable[[], Store]) -> Store:
    return opened()
