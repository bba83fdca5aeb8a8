"""scripts/fastapi_app.py answers real HTTP requests on loopback: each request a job, awaited."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import jobq
from tests.conftest import REPO, _env

pytestmark = pytest.mark.timeout(90)


def _start(tmp_path: Path, db: str) -> tuple[subprocess.Popen[str], list[str], str]:
    env = _env()
    env["JOBQ_DB"] = db
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "fastapi_app.py"), "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(45):
        raise AssertionError("the app did not start:\n" + "".join(lines))
    url = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", "".join(lines)).group(1)
    return proc, lines, url


def test_fastapi_example_runs_a_job_per_request(tmp_path: Path) -> None:
    db = str(tmp_path / "service.db")
    proc, lines, url = _start(tmp_path, db)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.get("/square/7")
            assert r.status_code == 200, r.text
            first = r.json()
            assert first["result"] == 49
            bad = client.get("/square/seven")
            assert bad.status_code == 422 and "x" in str(bad.json()["detail"][0]["loc"])
            r = client.get("/sum-of-squares", params={"n": 1000})
            assert r.status_code == 200 and r.json()["result"] == sum(i * i for i in range(1000))
            assert client.get("/sum-of-squares", params={"n": -1}).status_code == 422
            record = client.get(f"/jobs/{first['job']}").json()
            assert record["state"] == "succeeded" and record["target"] == "fastapi_app:square"
            assert client.get("/jobs/999999").status_code == 404

        async def many() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                answers = await asyncio.gather(*(client.get(f"/square/{i}") for i in range(40)))
            return [a.json()["result"] for a in answers]

        assert asyncio.run(many()) == [i * i for i in range(40)]
        q = jobq.Queue(db)  # every request was a job in the file
        assert q.get(first["job"]).result == 49
        assert q.status()["counts"]["succeeded"] >= 41
        proc.send_signal(signal.SIGTERM)  # the lifespan drains the embedded supervisor
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert proc.wait(30) in (0, -signal.SIGTERM), "".join(lines)
        assert "Application shutdown complete" in "".join(lines)
        deadline = time.monotonic() + 10
        while q.live_supervisors() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert q.live_supervisors() == []
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
