"""A screenshot of the live page for the docs: a real control plane (``manage.py serve`` with the demo worker, CPU),
some traffic through the OpenAI-compatible gateway so that the charts have shapes, then a full-page screenshot of
/live/ in Debian's Chromium (Playwright).

  .venv/bin/python bench/screenshot_live.py [--seconds 60] [--width 1400] [--out docs/img/live-dashboard.png]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.serve import ControlPlane, wait_for  # noqa: E402

ADMIN_PASSWORD = "e2e-admin-password-1"  # what ControlPlane gives ensure_admin
PROMPTS = ["Return the", "This module provides", "If the value is", "The default value is", "Raise an error when"]


def traffic(plane: ControlPlane, until: float, worker: int, counts: dict) -> None:
    """Completions one after another (a varying length and pause, so tokens/s and the queue move), and now and then a
    chat turn in a session of its own, so that the open-sessions and KV-cache lines move too."""
    headers = {"Authorization": f"Bearer {plane.token}"}
    with httpx.Client(base_url=plane.url, headers=headers, timeout=120) as http:
        for n in itertools.count():
            if time.time() >= until:
                return
            phase = (time.time() % 30) / 30  # busier and quieter stretches
            if n % 7 == 3:
                response = http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "demo",
                        "messages": [{"role": "user", "content": PROMPTS[n % len(PROMPTS)]}],
                        "max_tokens": 16,
                        "session_id": f"screenshot-{worker}-{n // 21}",
                    },
                )
            else:
                response = http.post(
                    "/v1/completions",
                    json={
                        "model": "demo",
                        "prompt": PROMPTS[n % len(PROMPTS)],
                        "max_tokens": 16 + (n * 13) % 48,
                        "seed": worker * 100_000 + n,  # distinct seeds: generated, not served from the cache
                    },
                )
            counts["ok" if response.status_code == 200 else "failed"] += 1
            time.sleep(0.05 + 0.6 * phase)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="how long to send traffic before the screenshot")
    parser.add_argument("--clients", type=int, default=3, help="concurrent clients")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "live-dashboard.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="screenshot-live-")))
    plane.prepare()
    plane.start()
    try:
        with plane.api() as api:
            wait_for(
                lambda: [d["status"] for d in api.get("/api/v1/deployments/").json()["results"]] == ["running"],
                what="the demo deployment to be running",
            )
        counts = {"ok": 0, "failed": 0}
        until = time.time() + args.seconds
        clients = [
            threading.Thread(target=traffic, args=(plane, until, i, counts), daemon=True) for i in range(args.clients)
        ]
        for client in clients:
            client.start()
        print(f"sending traffic for {args.seconds:.0f} s to {plane.url} ...", flush=True)
        for client in clients:
            client.join()
        print(f"requests: {counts['ok']} answered, {counts['failed']} failed", flush=True)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": args.width, "height": 900})
                page.set_default_timeout(60_000)
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("console", lambda message: message.type == "error" and errors.append(message.text))
                page.goto(f"{plane.url}/accounts/login/?next=/live/")
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", ADMIN_PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{plane.url}/live/")
                page.wait_for_function("() => document.getElementById('live-state').dataset.state === 'live'")
                samples = int(page.text_content("#live-samples"))
                page.wait_for_function(
                    "n => Number(document.getElementById('live-samples').textContent) >= n", arg=samples + 3
                )
                page.wait_for_selector('#live-charts figure[data-chart="worker-mem"] canvas')
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                charts = page.eval_on_selector_all(
                    "#live-charts figure[data-chart]", "fs => fs.map(f => f.dataset.chart + ':' + f.dataset.points)"
                )
                print("charts:", " ".join(charts))
                if errors:
                    print("page errors:", *errors, sep="\n  ")
            finally:
                browser.close()
        print(f"wrote {args.out}")
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
