"""Fault injection: off unless enabled (404), a leak that grows resident memory at its rate, slowed steps, and a
share of requests failed with a 500 that says it was injected."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from inference.engine import Engine
from inference.faults import Faults
from inference.protocol import ConfigError
from inference.server import create_app
from tests.inference.helpers import CONTROL_TOKEN, LiveServer, start_server, stop_server, wait_until

HEADERS = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_leak_grows_at_its_rate_in_whole_touched_pages_and_is_freed_on_reset() -> None:
    clock = Clock()
    faults = Faults(clock=clock)
    faults.update({"leak_mb_per_min": 6})
    faults.stop()  # drive it by hand
    clock.now = 30.0
    assert faults.leak_tick() == 3 * 2**20
    clock.now = 40.0
    faults.leak_tick()
    assert faults.to_dict()["leaked_host_bytes"] == 4 * 2**20
    faults.update({"leak_mb_per_min": 0})
    clock.now = 100.0
    faults.leak_tick()
    assert faults.host_bytes == 4 * 2**20  # stopped growing, kept what leaked
    assert faults.reset()["leaked_host_bytes"] == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"leak_mb_per_min": -1}, "leak_mb_per_min"), ({"fail_percent": 101}, "fail_percent"), ({"x": 1}, "x")],
)
def test_a_fault_out_of_bounds_or_unknown_is_refused_naming_it(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Faults().update(changes)
    assert caught.value.param == field


def test_steps_are_slowed_and_requests_failed_at_the_set_share() -> None:
    slept: list[float] = []
    faults = Faults(sleep=slept.append, rng=random.Random(1))
    faults.update({"step_delay_ms": 250, "fail_percent": 30})
    faults.slow_step()
    assert slept == [0.25]
    failed = sum(faults.fail_request() is not None for _ in range(2000))
    assert 450 < failed < 750 and faults.failed_requests == failed


@pytest.fixture
def faulty(engine: Engine) -> Iterator[LiveServer]:
    faults = Faults(engine.active_device)
    app = create_app(engine, CONTROL_TOKEN, None, faults=faults)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    live = LiveServer(f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", engine, server, thread)
    yield live
    stop_server(live)


def test_the_faults_route_is_404_unless_the_worker_enabled_it(engine: Engine) -> None:
    live = start_server(engine)
    try:
        for method in ("GET", "POST", "DELETE"):
            response = httpx.request(method, live.url + "/control/faults", headers=HEADERS, json={})
            assert response.status_code == 404, response.text
        assert engine.faults is None
    finally:
        stop_server(live)


def test_an_enabled_worker_fails_the_share_of_requests_asked_with_a_clear_500(faulty: LiveServer) -> None:
    model = faulty.engine.model_ids()[0]
    body = {**CHAT, "model": model}
    assert httpx.post(faulty.url + "/v1/chat/completions", json=body, timeout=60).status_code == 200
    reply = httpx.post(faulty.url + "/control/faults", headers=HEADERS, json={"fail_percent": 100}, timeout=10)
    assert reply.status_code == 200 and reply.json()["fail_percent"] == 100
    response = httpx.post(faulty.url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "injected_fault" and "failed on purpose" in error["message"]
    bad = httpx.post(faulty.url + "/control/faults", headers=HEADERS, json={"fail_percent": "all"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "fail_percent"
    cleared = httpx.delete(faulty.url + "/control/faults", headers=HEADERS, timeout=10).json()
    assert cleared["fail_percent"] == 0 and cleared["failed_requests"] == 1
    assert httpx.post(faulty.url + "/v1/chat/completions", json=body, timeout=60).status_code == 200


def test_the_leak_of_an_enabled_worker_shows_in_its_status(faulty: LiveServer) -> None:
    httpx.post(faulty.url + "/control/faults", headers=HEADERS, json={"leak_mb_per_min": 600}, timeout=10)
    wait_until(
        lambda: (
            httpx.get(faulty.url + "/control/faults", headers=HEADERS, timeout=10).json()["leaked_host_bytes"]
            >= 10 * 2**20
        ),
        what="10 MiB to leak",
    )
