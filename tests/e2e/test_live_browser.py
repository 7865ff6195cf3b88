"""The live page in a real browser (Debian's Chromium through Playwright) against a real ``manage.py serve``: signed in
through the login form, the charts take new samples over /ws/metrics/, the page reconnects by itself when the control
plane restarts, "Last hour" draws the history, and a websocket without a session is refused."""

from __future__ import annotations

import pytest

from .browser import MARKS, launch, sign_in

WAIT_MS = 60_000  # a busy two-core machine: generous waits, never timing assertions

pytestmark = MARKS


@pytest.fixture(scope="module")
def plane(running_plane):
    return running_plane


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


class LivePage:
    """A signed-in page on /live/ that records script errors and console errors."""

    def __init__(self, browser, plane):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))
        sign_in(self.page, plane.url, "/live/")

    def close(self):
        self.context.close()

    # --- the test hooks of static/js/live.js ------------------------------------------------------------------------
    def wait_state(self, state: str) -> None:
        self.page.wait_for_function(
            "state => document.getElementById('live-state').dataset.state === state", arg=state, timeout=WAIT_MS
        )

    def state(self) -> str:
        return self.page.get_attribute("#live-state", "data-state")

    def connections(self) -> int:
        return int(self.page.get_attribute("#live-state", "data-connections") or 0)

    def samples(self) -> int:
        return int(self.page.text_content("#live-samples"))

    def wait_samples_above(self, count: int) -> None:
        self.page.wait_for_function(
            "count => Number(document.getElementById('live-samples').textContent) >= count", arg=count, timeout=WAIT_MS
        )

    def wait_chart(self, chart: str) -> None:
        self.page.wait_for_selector(f'#live-charts figure[data-chart="{chart}"] canvas', timeout=WAIT_MS)

    def points(self, chart: str) -> int:
        return int(self.page.get_attribute(f'#live-charts figure[data-chart="{chart}"]', "data-points"))

    def wait_points_above(self, chart: str, count: int) -> None:
        self.page.wait_for_function(
            """([chart, count]) => {
                const figure = document.querySelector(`#live-charts figure[data-chart="${chart}"]`);
                return figure !== null && Number(figure.dataset.points) > count;
            }""",
            arg=[chart, count],
            timeout=WAIT_MS,
        )

    def wait_charts_fit(self) -> None:
        """Every chart is drawn within its own grid cell: none is wider than its card (so none overlaps another)."""
        self.page.wait_for_function(
            """() => {
                const figures = [...document.querySelectorAll('#live-charts figure[data-chart]')];
                return figures.length > 0 && figures.every(figure => {
                    const plot = figure.querySelector('.uplot');
                    return plot !== null &&
                        plot.getBoundingClientRect().width <= figure.getBoundingClientRect().width + 1;
                });
            }""",
            timeout=WAIT_MS,
        )

    def charts(self) -> dict[str, tuple[int, int]]:
        """Chart id -> (points, series) of every chart drawn."""
        return {
            chart: (int(points), int(series))
            for chart, points, series in self.page.eval_on_selector_all(
                "#live-charts figure[data-chart]",
                "figures => figures.map(f => [f.dataset.chart, f.dataset.points, f.dataset.series])",
            )
        }


@pytest.fixture
def live(browser, plane):
    page = LivePage(browser, plane)
    yield page
    page.close()


def test_the_live_page_draws_new_samples_from_the_websocket(live):
    live.wait_state("live")
    before = live.samples()
    live.wait_samples_above(before + 2)
    live.wait_chart("host-cpu")
    live.wait_chart("worker-mem")  # the demo worker's RSS at least
    points = live.points("host-cpu")
    live.wait_points_above("host-cpu", points)
    charts = live.charts()
    assert charts["host-cpu"][1] == 1 and charts["worker-mem"][1] >= 1
    assert {"host-mem", "tokens", "queue"} <= charts.keys()
    # uPlot drew them: one canvas and one title per chart
    assert live.page.locator("#live-charts figure[data-chart] canvas").count() == len(charts)
    assert "Worker memory" in live.page.locator('figure[data-chart="worker-mem"] .u-title').inner_text()
    assert live.page.locator("#live-empty").is_hidden()
    live.wait_charts_fit()  # three columns at 1400 px, each chart as wide as its column
    live.page.set_viewport_size({"width": 800, "height": 1000})
    live.wait_charts_fit()  # and they follow the window
    notice = live.page.locator("#nvml-notice")
    if "gpu-util" in charts:  # a machine with a GPU
        assert notice.is_hidden()
    else:
        notice.wait_for(state="visible", timeout=WAIT_MS)
        assert "nvml" in notice.inner_text().lower()
    assert live.state() == "live" and live.connections() == 1
    assert live.errors == [] and live.console_errors == []


def test_last_hour_draws_the_one_minute_rollups_and_live_comes_back(live):
    live.wait_state("live")
    live.wait_chart("host-cpu")
    connections = live.connections()
    live.page.click("#show-hour")
    live.wait_state("history")
    live.page.wait_for_function(
        "() => document.getElementById('live-state').textContent.startsWith('last hour')", timeout=WAIT_MS
    )
    assert live.page.get_attribute("#show-hour", "aria-pressed") == "true"
    charts = live.charts()
    assert charts and all(points >= 1 and series >= 1 for points, series in charts.values()), charts
    assert "host-cpu" in charts
    live.wait_charts_fit()
    samples = live.samples()
    live.wait_samples_above(samples + 1)  # the socket stays open in history mode...
    assert live.state() == "history"  # ...without drawing the samples over the history
    live.page.click("#show-live")
    live.wait_state("live")
    assert live.page.get_attribute("#show-live", "aria-pressed") == "true"
    live.wait_chart("host-cpu")
    live.wait_samples_above(live.samples() + 2)
    assert live.connections() == connections + 1  # "Live" reconnects to get the backfill
    assert live.errors == [] and live.console_errors == []


def test_the_page_reconnects_by_itself_when_the_control_plane_restarts(live, plane):
    live.wait_state("live")
    live.wait_samples_above(live.samples() + 1)
    assert live.connections() == 1
    port = plane.port
    plane.stop()
    try:
        live.wait_state("reconnecting")
        assert live.connections() == 1
    finally:
        plane.start()  # the same port, database and SECRET_KEY: the session cookie stays good
    assert plane.port == port
    live.wait_state("live")
    live.page.wait_for_function(
        "() => document.getElementById('live-state').dataset.connections === '2'", timeout=WAIT_MS
    )
    live.wait_samples_above(live.samples() + 2)
    live.wait_chart("host-cpu")
    assert live.state() == "live" and live.connections() == 2
    # no reload happened: the page is the one opened before the restart, and the session still signs in
    assert live.page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert live.page.evaluate("() => performance.getEntriesByType('navigation')[0].name").endswith("/live/")
    answer = live.context.request.get(f"{plane.url}/live/", max_redirects=0)
    assert answer.status == 200
    assert live.errors == []
    # while the server was down, Chromium logged the refused reconnection attempts; nothing else
    assert all("WebSocket connection to" in text for text in live.console_errors), live.console_errors


def test_a_websocket_without_a_session_is_refused(browser, plane):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{plane.url}/accounts/login/")
        outcome = page.evaluate(
            """url => new Promise(resolve => {
                const socket = new WebSocket(url);
                let opened = false;
                socket.onopen = () => { opened = true; };
                socket.onclose = (event) => resolve({opened: opened, code: event.code});
                setTimeout(() => resolve({opened: opened, code: null, timeout: true}), 30000);
            })""",
            f"ws://127.0.0.1:{plane.port}/ws/metrics/",
        )
        assert outcome == {"opened": False, "code": 1006}  # the handshake failed: no open, an abnormal close
    finally:
        context.close()

    # the same without a browser: the handshake is answered 403
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{plane.port}/ws/metrics/", origin=plane.url, open_timeout=30).close()
    assert refused.value.response.status_code == 403
