"""The dashboard's pages in a real browser: Playwright driving Debian's Chromium against a
real `jobq dashboard` and real supervisors. Without a browser these tests skip, except in CI
(CI=true), where that is a failure. The fixtures (browser, site, page) are in conftest.py."""

from __future__ import annotations

from typing import Any

from tests.conftest import wait_for
from tests.dashboard_util import XSS, count_cell


def test_overview_counts_change_as_a_supervisor_drains(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    q.submit_many("tests.dash_tasks:nap", [(0.05,)] * 12, queue="drain")
    page.goto("/")
    expect(count_cell(page, "drain", "queued")).to_have_text("12")
    expect(count_cell(page, "drain", "succeeded")).to_have_text("0")
    response = page.request.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    site["procs"].supervisor(site["db"], "-c", "2", "-q", "drain", "--burst")
    expect(count_cell(page, "drain", "succeeded")).to_have_text("12", timeout=40_000)  # no reload: live
    expect(count_cell(page, "drain", "queued")).to_have_text("0")
    assert page.locator(".chart rect.ok").count() >= 1


def test_a_filter_narrows_the_list(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    alpha = [q.submit("tests.tasks:add", (i,), queue="filters", name="alpha", delay="1h").id for i in range(3)]
    for i in range(4):
        q.submit("tests.tasks:add", (i,), queue="filters", name="beta", delay="1h")
    page.goto("/jobs?queue=filters")
    expect(page.locator("tbody#live tr[data-job]")).to_have_count(7)
    page.fill("input[name=name]", "alpha")
    page.click("form.filters button[type=submit]:not([name])")
    expect(page.locator("tbody#live tr[data-job]")).to_have_count(3)
    shown = [int(x) for x in page.locator("tbody#live tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")]
    assert shown == sorted(alpha, reverse=True)
    assert set(page.locator("tbody#live td.name").all_inner_texts()) == {"alpha"}
    # select two and cancel them in bulk; then "all that match" cancels the rest
    page.locator("input.pick").nth(0).check()
    page.locator("input.pick").nth(1).check()
    page.click("button[data-bulk=cancel]")
    expect(page.locator("#flash")).to_have_text("cancel: 2 job(s)")
    assert sorted(q.store.get_states(alpha).values()) == ["cancelled", "cancelled", "scheduled"]
    page.check("#all-matching")
    page.click("button[data-bulk=cancel]")
    expect(page.locator("#flash")).to_have_text("cancel: 3 job(s)")
    assert set(q.store.get_states(alpha).values()) == {"cancelled"}
    assert [r.state for r in q.list(queue="filters", limit=10) if r.name == "beta"] == ["scheduled"] * 4


def test_failed_job_shows_traceback_and_output_and_retry_makes_it_succeed(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    job = q.submit("tests.dash_tasks:fail_once", (str(site["tmp"] / "fail_once"),))
    wait_for(lambda: job.state == "failed", what="the job to fail")
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.locator("#job-traceback")).to_contain_text("RuntimeError: first call fails on purpose")
    expect(page.locator("#job-traceback")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator("#job-output")).to_contain_text("attempt 1 of fail_once")
    page.click("button:text('Retry')")
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("#job-result")).to_contain_text('"fixed"')
    expect(page.locator("#job-output")).to_contain_text("attempt 2 of fail_once")
    assert job.join(timeout=5) == "fixed"


def test_cancel_ends_a_running_job(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    job = q.submit("tests.dash_tasks:nap", (120,), queue="other")
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("running", timeout=30_000)
    page.click("button:text('Cancel')")
    expect(page.locator("#job-state")).to_have_text("cancelled", timeout=30_000)
    assert job.state == "cancelled"


def test_a_paused_queue_waits_while_another_runs_and_resume_releases_it(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    page.goto("/queues")
    q.submit("tests.tasks:add", (0,), queue="other").join(timeout=30)  # the queue is known
    expect(page.locator('tr[data-queue="other"] button')).to_have_text("Pause")
    page.click('tr[data-queue="other"] button')
    expect(page.locator('tr[data-queue="other"] td.paused')).to_have_text("paused")
    held = [q.submit("tests.tasks:add", (i,), queue="other") for i in range(3)]
    free = q.submit("tests.tasks:add", (5,), queue="default")
    assert free.join(timeout=30) == 6
    assert {j.state for j in held} == {"queued"}
    expect(page.locator('tr[data-queue="other"] td[data-count="queued"]')).to_have_text("3")
    page.click('tr[data-queue="other"] button:text("Resume")')
    expect(page.locator('tr[data-queue="other"] td[data-count="queued"]')).to_have_text("0", timeout=30_000)
    assert [j.join(timeout=30) for j in held] == [1, 2, 3]


def test_a_job_carrying_markup_shows_it_as_text(page: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    q = site["q"]
    job = q.submit("tests.dash_tasks:say", (XSS,), name=XSS)
    assert job.join(timeout=30) == XSS
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#job-name")).to_have_text(XSS)
    expect(page.locator("#job-output")).to_have_text(XSS + "\n")
    expect(page.locator("#job-result")).to_contain_text(XSS)
    page.wait_for_timeout(2500)  # one live refresh: the fragment is escaped as well
    expect(page.locator("#job-name")).to_have_text(XSS)
    assert page.locator("main script").count() == 0
    page.goto(f"/jobs?name={XSS}")
    expect(page.locator("tbody#live td.name")).to_have_text([XSS])
    # the page fixture fails the test if any dialog opened


def test_a_post_without_the_token_is_401_and_changes_nothing(browser: Any, page: Any, site: dict[str, Any]) -> None:
    q = site["q"]
    job = q.submit("tests.tasks:add", (1,), delay="1h")
    before = q.store.count_jobs()
    stranger = browser.new_context(base_url=site["url"])
    try:
        r = stranger.request.post(f"/api/v1/jobs/{job.id}/cancel")
        assert r.status == 401 and "error" in r.json()
        r = stranger.request.post("/api/v1/jobs", data={"target": "tests.tasks:add"})
        assert r.status == 401
        p = stranger.new_page()
        p.goto(f"/jobs/{job.id}")  # no session: the button's POST is refused
        p.click("button:text('Cancel')")
        p.wait_for_selector("#flash.bad")
        assert "401" in p.locator("#flash").inner_text()
    finally:
        stranger.close()
    # logged in, but a POST without the page's CSRF token
    page.goto("/")
    status = page.evaluate(f"fetch('/api/v1/jobs/{job.id}/cancel', {{method: 'POST'}}).then(r => r.status)")
    assert status == 401
    assert job.state == "scheduled" and q.store.count_jobs() == before
    job.cancel()
