"""Make docs/dashboard.png and docs/job.png: a real run (a supervisor draining a mix of jobs on
two queues, a few failing, for ``--seconds``) with `jobq dashboard` serving it, photographed by
Chromium: the overview, and the page of a job that printed, failed and was retried.

    python scripts/dashboard_screenshot.py [--seconds 150] [--out docs/dashboard.png] [--job-out docs/job.png]

Needs the dashboard and test extras (Playwright) and /usr/bin/chromium."""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jobq  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0, help="how long jobs keep coming")
    parser.add_argument("--out", default=str(REPO / "docs" / "dashboard.png"))
    parser.add_argument("--job-out", default=str(REPO / "docs" / "job.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    opts = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="jobq-shot-"))
    db = str(tmp / "jobs.db")
    q = jobq.Queue(db)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(tmp / "dashboard.log", "w")  # noqa: SIM115 - closed below
    dash = subprocess.Popen(
        [sys.executable, "-m", "jobq", "--db", db, "dashboard", "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = None
        for _ in range(600):
            m = re.search(r"jobq dashboard: (http://\S+)", (tmp / "dashboard.log").read_text())
            if m:
                url = m.group(1)
                break
            time.sleep(0.05)
        if url is None:
            raise SystemExit(f"the dashboard did not start: {(tmp / 'dashboard.log').read_text()}")
        rng = random.Random(7)
        q.pause_queue("reports")
        with jobq.Supervisor(q, concurrency=2):
            retried = q.submit(
                "jobq.examples:fail", ("the payment service said no",), name="charge card", retries=2, retry_backoff=2
            )
            end = time.monotonic() + opts.seconds
            while time.monotonic() < end:
                for _ in range(rng.randint(20, 60)):
                    if rng.random() < 0.06:
                        q.submit("jobq.examples:add", ("two", 2), queue="emails", name="bad input")
                    else:
                        q.submit("jobq.examples:add", (rng.randint(1, 99), 1), queue=rng.choice(["default", "emails"]))
                q.submit("jobq.examples:add", (1, 1), queue="reports", name="monthly")
                time.sleep(rng.uniform(0.5, 2.0))
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=opts.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
                page.goto(url)
                page.wait_for_selector(".chart")
                Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=opts.out, full_page=True)
                page.goto(f"{url.rstrip('/')}/jobs/{retried.id}")
                page.wait_for_selector("#job-timeline")
                page.screenshot(path=opts.job_out, full_page=True)
                browser.close()
        print(f"wrote {opts.out} and {opts.job_out}")
    finally:
        os.killpg(dash.pid, signal.SIGTERM)
        dash.wait(10)
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
