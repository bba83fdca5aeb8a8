"""The dashboard's second pass in a real browser (Playwright on Debian's Chromium, against a
real `jobq dashboard` and real supervisors): durations and queue wait, relative times with
the exact time on hover, a job's timeline, actions only where they apply, tracebacks without
jobq's own frames, the charts' ranges per queue, the search, the live tail, dark mode and the
footer. Skipped without a browser, a failure in CI. Fixtures: conftest.py."""

from __future__ import annotations

import re
from typing import Any

import jobq
from tests.conftest import wait_for

AGO = re.compile(r"^just now$|^(\d+(\.\d)? (ms|s)|\d+ (min|h|d)( \d+ (s|min|h))?) ago$")
EXACT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC$")


def test_jobs_list_shows_wait_duration_and_relative_times_with_exact_hover(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    job = q.submit("tests.dash_tasks:nap", (0.3,), name="timing")
    assert job.join(timeout=30) == 0.3
    page.goto("/jobs?name=timing")
    row = page.locator(f'tr[data-job="{job.id}"]')
    expect(row).to_have_count(1)
    duration = row.locator("td.duration").inner_text()
    assert re.fullmatch(r"\d+ ms", duration) and 300 <= int(duration.split()[0]) < 5000, duration
    assert re.fullmatch(r"\d+ ms|\d+\.\d s", row.locator("td.wait").inner_text())
    created = row.locator("td.created time")
    assert AGO.match(created.inner_text()), created.inner_text()
    assert EXACT.match(created.get_attribute("title") or "")
    record = q.record(job.id).to_dict()
    assert created.get_attribute("datetime") == record["created_at"]
    assert (created.get_attribute("title") or "").startswith(record["created_at"][:10] + " " + record["created_at"][11:23])
    created.hover()  # the exact time is the element's tooltip
    assert page.evaluate("document.querySelector('td.created time:hover') !== null")


def test_job_page_timeline_lists_every_attempt(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    job = q.submit("tests.dash_tasks:fail_once", (str(site["tmp"] / "timeline_once"),), retries=1, retry_backoff=0.1)
    assert job.join(timeout=30) == "fixed"
    page.goto(f"/jobs/{job.id}")
    labels = page.locator("#job-timeline li .label")
    expect(labels).to_have_text(
        ["submitted", "attempt 1 started", "attempt 1: RuntimeError", "attempt 2 started", "attempt 2: succeeded"]
    )
    expect(page.locator("#job-timeline li.ev-succeeded")).to_have_count(1)
    expect(page.locator("#job-timeline li.ev-failed")).to_have_count(1)
    for t in page.locator("#job-timeline time").all():
        assert EXACT.match(t.get_attribute("title") or "")
    assert re.fullmatch(r"\d+ ms|\d+\.\d s", page.locator("#job-duration").inner_text())
    assert page.locator("#job-wait").inner_text() != "–"


def test_actions_show_only_where_they_apply(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    done = q.submit("tests.tasks:add", (1,))
    assert done.join(timeout=30) == 2
    later = q.submit("tests.tasks:add", (1,), delay="1h")
    failed = q.submit("tests.dash_tasks:boom", ("no retry here",))
    wait_for(lambda: failed.state == "failed", what="the job to fail")
    cases = [(done, [], ["Cancel", "Retry"]), (later, ["Cancel"], ["Retry"]), (failed, ["Retry"], ["Cancel"])]
    for job, shown, hidden in cases:
        page.goto(f"/jobs/{job.id}")
        expect(page.locator("#job-state")).to_have_text(job.state)
        for text in shown:
            expect(page.locator(f".actions button:text('{text}')")).to_have_count(1)
        for text in hidden:
            expect(page.locator(f".actions button:text('{text}')")).to_have_count(0)
    page.goto(f"/jobs/{later.id}")
    page.click(".actions button:text('Cancel')")
    expect(page.locator("#job-state")).to_have_text("cancelled")
    expect(page.locator(".actions button:text('Retry')")).to_have_count(1)  # the live region follows the state
    expect(page.locator(".actions button:text('Cancel')")).to_have_count(0)
    page.goto("/jobs?state=succeeded")
    expect(page.locator("button[data-bulk=delete]")).to_have_count(1)
    expect(page.locator("button[data-bulk=retry]")).to_have_count(0)
    expect(page.locator("button[data-bulk=cancel]")).to_have_count(0)
    page.goto("/jobs?state=scheduled")
    expect(page.locator("button[data-bulk=cancel]")).to_have_count(1)
    expect(page.locator("button[data-bulk=retry]")).to_have_count(0)


def test_traceback_hides_jobqs_own_frames_until_toggled(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    job = q.submit("tests.dash_tasks:boom", ("trimmed traceback",))
    wait_for(lambda: job.state == "failed", what="the job to fail")
    full = q.record(job.id).error["traceback"]
    assert "/jobq/" in full and "dash_tasks.py" in full  # jobq's frames are there to hide
    page.goto(f"/jobs/{job.id}")
    tb = page.locator("#job-traceback")
    expect(tb).to_contain_text("ValueError: trimmed traceback")
    shown = tb.inner_text()  # what is rendered, hidden frames left out
    assert "dash_tasks.py" in shown and "frame(s) of jobq hidden" in shown
    assert "/jobq/" not in shown
    page.check("#show-jobq-frames")
    shown = str(wait_for(lambda: "/jobq/" in tb.inner_text() and tb.inner_text(), what="jobq's frames to show"))
    assert "frame(s) of jobq hidden" not in shown and "dash_tasks.py" in shown
    page.wait_for_timeout(2500)  # a live refresh keeps the choice
    assert "/jobq/" in tb.inner_text()
    page.uncheck("#show-jobq-frames")
    wait_for(lambda: "/jobq/" not in tb.inner_text(), what="jobq's frames to hide again")


def test_overview_charts_by_range_and_queue(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    ok = q.submit_many("tests.tasks:add", [(i,) for i in range(3)], queue="charts")
    bad = q.submit("tests.dash_tasks:boom", ("for the chart",), queue="charts")
    site["procs"].supervisor(site["db"], "-c", "1", "-q", "charts", "--burst")
    for j in ok:
        j.join(timeout=30)
    wait_for(lambda: bad.state == "failed", what="the job to fail")
    page.goto("/?queue=charts")
    expect(page.locator("#chart-queue")).to_have_text("charts")
    # the figures are written once a second per process: the live region catches up
    expect(page.locator('#chart-totals [data-total="succeeded"]')).to_have_text("3")
    expect(page.locator('#chart-totals [data-total="failed"]')).to_have_text("1")
    expect(page.locator("#failure-rate")).to_have_text("25.0%")
    expect(page.locator("#chart-ranges a.on")).to_have_text("1h")
    assert page.locator("#chart-throughput rect.ok").count() >= 1
    assert page.locator("#chart-throughput rect.bad").count() == 1
    assert page.locator("#chart-failure-rate circle.rate").count() >= 1
    for label, bars in (("24h", 24), ("7d", 28), ("1h", 60)):
        page.click(f"#chart-ranges a[data-range='{label}']")
        expect(page.locator("#chart-ranges a.on")).to_have_text(label)
        expect(page.locator("#chart-queue")).to_have_text("charts")  # the queue stays chosen
        expect(page.locator('#chart-totals [data-total="succeeded"]')).to_have_text("3")
        assert page.locator("#chart-throughput g").count() == bars
    page.click("#chart-queues a[data-queue='']")  # all queues
    expect(page.locator("#chart-queue")).to_have_count(0)
    total = int(page.locator('#chart-totals [data-total="succeeded"]').inner_text())
    assert total >= 3


def test_search_finds_text_in_arguments_and_results(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    hit = q.submit("tests.tasks:echo", ("a Needle-7731 in the args",), delay="1h")
    kw = q.submit("tests.tasks:echo", (), {"note": "needle-7731"}, delay="1h")
    q.submit("tests.tasks:echo", ("hay",), delay="1h")
    result = q.submit("tests.dash_tasks:say", ("result needle-7731",))
    result.join(timeout=30)
    page.goto("/jobs")
    page.fill("input[name=contains]", "NEEDLE-7731")
    page.click("form.filters button[type=submit]:not([name])")
    rows = page.locator("tbody#live tr[data-job]")
    expect(rows).to_have_count(3)  # the say job's argument and result both hold it: listed once
    shown = [int(x) for x in rows.evaluate_all("rows => rows.map(r => r.dataset.job)")]
    assert shown == sorted([hit.id, kw.id, result.id], reverse=True)
    assert "contains=NEEDLE-7731" in page.url


def test_live_tail_follows_a_running_jobs_output(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    job = q.submit("tests.dash_tasks:ticker", (40, 0.25), queue="other")
    page.goto(f"/jobs/{job.id}")
    out = page.locator("#job-output")
    expect(page.locator("#job-state")).to_have_text("running", timeout=30_000)
    expect(out).to_contain_text("line 3")
    seen = out.inner_text()
    assert job.state == "running"
    expect(out).not_to_have_text(seen)  # it grows while the job runs, without a reload
    assert job.state == "running"
    at_end = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 4"
    wait_for(lambda: out.evaluate(at_end), timeout=10, what="the tail to follow the end")
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=30_000)
    expect(out).to_contain_text("line 39")


def test_dark_mode_follows_the_browser(browser: Any, site: dict[str, Any]) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(base_url=site["url"], color_scheme=scheme)
        try:
            p = context.new_page()
            p.goto("/login")
            colours[scheme] = p.evaluate("(s => [s.backgroundColor, s.color])(getComputedStyle(document.body))")
        finally:
            context.close()
    assert colours["light"] == ["rgb(247, 248, 250)", "rgb(29, 35, 48)"]
    assert colours["dark"] == ["rgb(15, 20, 32)", "rgb(228, 231, 236)"]


def test_footer_shows_version_and_backend(page: Any, site: dict[str, Any]) -> None:
    import sqlite3

    from playwright.sync_api import expect

    page.goto("/")
    expect(page.locator("#footer")).to_contain_text(f"jobq {jobq.__version__}")
    expect(page.locator("#footer")).to_contain_text(f"sqlite {sqlite3.sqlite_version}")
