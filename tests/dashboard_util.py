"""A real `jobq dashboard` process on an ephemeral loopback port, for the dashboard tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, _env, wait_for

TOKEN = "browser-token"
CHROMIUM = os.environ.get("JOBQ_CHROMIUM", "/usr/bin/chromium")
LIVE = 15_000  # ms: several 2-second refreshes
XSS = "<script>alert(1)</script>"


def require_dashboard_libs() -> None:
    """Skip without the dashboard extra (a failure in CI, where the test extra installs it)."""
    from jobq.dashboard import INSTALL_LINE, missing

    absent = missing()
    if absent:
        reason = f"the dashboard needs {', '.join(absent)}: {INSTALL_LINE}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


class DashboardServer:
    """``python -m jobq --db DB dashboard --port 0 ...`` in its own session; ``url`` is where it
    listens (read from its first line). ``stop()`` ends it and its group by pid. ``prefix`` runs
    it through another command (``ip netns exec NS``)."""

    def __init__(self, db: str, log: Path, *args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.log = log
        fh = open(log, "w")
        self.proc = subprocess.Popen(  # `prefix` (ip netns exec NS) execs the command: the pid is the server's
            [*prefix, sys.executable, "-m", "jobq", "--db", db, "dashboard", "--port", "0", *args],
            cwd=REPO,
            env={**_env(), **(env or {})},
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        fh.close()
        found = wait_for(self._url, timeout=30, what=f"the dashboard to listen (log {log})")
        self.url = str(found).rstrip("/")

    def _url(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"dashboard exited {self.proc.returncode}: {self.log.read_text()}")
        m = re.search(r"jobq dashboard: (http://\S+)", self.log.read_text())
        return m.group(1) if m else None

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                continue


def count_cell(p: Any, queue: str, state: str) -> Any:
    return p.locator(f'tr[data-queue="{queue}"] td[data-count="{state}"]')
