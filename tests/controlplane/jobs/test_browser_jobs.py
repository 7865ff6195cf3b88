"""The job page in a real browser (Debian's Chromium through Playwright): uPlot draws the charts, no script fails."""

import os
import shutil

import pytest
from django.conf import settings

from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns

from .conftest import add_job

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM and not os.environ.get("REQUIRE_BROWSER"), reason="Chromium is not installed (CI installs it)"
    ),
]


def test_the_job_page_draws_its_charts_without_script_errors(live_server, client, viewer, monkeypatch, clock):
    from playwright.sync_api import sync_playwright

    answers = iter({"expired": n, "freed_bytes": n * 2**20} for n in range(1, 6))
    add_job(
        monkeypatch, jobs.Job("cleanup", lambda: next(answers), every_s=60, series=jobs.JOBS["expire_sessions"].series)
    )
    for _ in range(5):
        jobruns.execute("cleanup", owner="scheduler:a", clock=clock)
        clock.advance(60)
    client.force_login(viewer)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.goto(f"{live_server.url}/jobs/cleanup/")
            page.wait_for_selector("figure.chart canvas")
            titles = page.locator(".u-title").all_inner_texts()
            assert titles == ["Duration of each run", "Sessions expired", "Memory freed"]
            assert page.locator("figure.chart canvas").count() == 3
            assert errors == []
        finally:
            browser.close()
