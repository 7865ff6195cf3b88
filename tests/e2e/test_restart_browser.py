"""The deployment page's restart in a real browser (Debian's Chromium through Playwright) against a real
``manage.py serve``: it asks for confirmation, follows the restart's progress live, and then shows the true state
(the new worker's pid, reachable, serving)."""

from __future__ import annotations

from .browser import MARKS, launch, sign_in
from .serve import pid_alive, wait_for

WAIT_MS = 240_000  # a busy two-core machine loads a second worker: generous waits, never timing assertions

pytestmark = MARKS


def test_restart_asks_first_follows_the_progress_and_then_shows_the_new_worker(running_plane):
    plane = running_plane
    from playwright.sync_api import sync_playwright

    with plane.api() as api:
        deployment = api.get("/api/v1/deployments/").json()["results"][0]
    old_pid = deployment["worker_pid"]
    url = f"{plane.url}/deployments/{deployment['id']}/"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(page, plane.url, f"/deployments/{deployment['id']}/")

        dialogs: list[str] = []

        def dismiss(dialog):
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        page.click("text=Restart worker")
        assert "no request is dropped" in dialogs[0]
        assert page.url == url  # dismissed: nothing was asked of the server
        with plane.api() as api:
            assert api.get(f"/api/v1/deployments/{deployment['id']}/").json()["worker_pid"] == old_pid

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("text=Restart worker")
        page.wait_for_selector("text=Restart requested")
        # the status follows the restart live: a new worker starting while the old one serves
        page.wait_for_function(
            "() => /restarting|new worker/.test(document.querySelector('[data-field=status_detail]').textContent)"
        )
        # then the page reloads by itself and shows the new worker, answering
        page.wait_for_function(
            "old => { const summary = document.getElementById('worker-summary').textContent;"
            " return summary.includes('Serving at') && !summary.includes('pid ' + old + ',') &&"
            " document.querySelector('[data-field=status]').textContent.trim() === 'Running'; }",
            arg=old_pid,
        )
        assert "The worker did not answer" not in page.text_content("body")
        assert errors == []
        browser.close()
    wait_for(lambda: not pid_alive(old_pid), timeout=120, what="the old worker to finish and stop")
