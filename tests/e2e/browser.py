"""What the browser tests share: Debian's Chromium driven by Playwright, the admin's password, their markers."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ADMIN_PASSWORD = "e2e-admin-password-1"  # tests/e2e/serve.py sets it for every control plane

MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not CHROMIUM and not os.environ.get("REQUIRE_BROWSER"), reason="Chromium is not installed (CI installs it)"
    ),
]


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(
        executable_path=CHROMIUM or "/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
    )


def sign_in(page: Any, base_url: str, next_path: str) -> None:
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")
