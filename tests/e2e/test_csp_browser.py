"""Every dashboard page under its Content-Security-Policy in a real browser: no violation is reported, no script
fails, and what used inline handlers still works (confirmations, selects that submit, the drift run form)."""

from __future__ import annotations

import pytest

from .browser import MARKS, launch, sign_in

WAIT_MS = 60_000

pytestmark = MARKS

PAGES = [
    "/",
    "/live/",
    "/deployments/",
    "/deployments/1/",
    "/models/",
    "/models/1/",
    "/nodes/",
    "/nodes/1/",
    "/drift/",
    "/sessions/",
    "/usage/",
    "/alerts/",
    "/alerts/rules/",
    "/jobs/",
    "/audit/",
    "/tokens/",
    "/users/",
    "/api/docs/",
]


@pytest.fixture(scope="module")
def plane(running_plane):
    return running_plane


@pytest.fixture
def page(plane):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.problems = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda message: (
                message.type == "error"
                and "Content Security Policy" in message.text
                and page.problems.append(message.text)
            ),
        )
        sign_in(page, plane.url, "/")
        yield page
        browser.close()


def test_no_page_reports_a_content_security_policy_violation(page, plane):
    for path in PAGES:
        response = page.goto(plane.url + path)
        assert response is not None and response.status == 200, path
        assert "script-src" in (response.headers.get("content-security-policy") or ""), path
        page.wait_for_load_state("networkidle")
    assert page.problems == []


def test_confirmations_and_self_submitting_selects_work_without_inline_handlers(page, plane):
    page.goto(plane.url + "/models/1/")
    asked: list[str] = []

    def dismiss(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.click("form[data-confirm] button[type=submit]")
    assert asked and asked[0].startswith("Delete ")
    assert page.url == plane.url + "/models/1/"  # dismissed: nothing was submitted

    page.goto(plane.url + "/live/")
    page.select_option("select[name=deployment]", index=1)
    page.wait_for_url("**/live/?*deployment=*")
    assert page.problems == []
