"""The control plane end to end: `manage.py serve` with its supervisor and a real worker serving the demo model,
called through the gateway with the official `openai` client, and faults made for real (SIGKILL, Ctrl-C)."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from openai import OpenAI

from .serve import Load, pid_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def plane(make_plane):
    return make_plane()


@pytest.fixture(scope="module")
def api(plane):
    with plane.api() as client:
        yield client


@pytest.fixture(scope="module")
def demo(api):
    return api.get("/api/v1/deployments/").json()["results"][0]


def openai_client(plane) -> OpenAI:
    return OpenAI(base_url=plane.url + "/v1", api_key=plane.token, max_retries=0, timeout=120)


def test_first_start_deploys_the_demo_model_and_the_gateway_answers_the_openai_client(plane, demo):
    assert demo["name"] == "demo" and demo["status"] == "running" and demo["worker_pid"]
    client = openai_client(plane)
    assert [m.id for m in client.models.list().data] == ["demo"]
    chat = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Return the"}], max_tokens=16, temperature=0
    )
    assert chat.choices[0].message.content and chat.usage.completion_tokens == 16
    completion = client.completions.create(model="demo", prompt="This module provides", max_tokens=8, seed=3)
    assert completion.choices[0].text and completion.usage.prompt_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "If"}], max_tokens=10, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and all(c.choices for c in chunks)  # the usage chunk is not shown to a client that did not ask


def test_a_streamed_answer_reports_usage_when_asked(plane):
    stream = openai_client(plane).chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Raise"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_deterministic_answers_come_from_the_cache_until_the_config_changes(plane, api, demo):
    body = {"model": "demo", "prompt": "The default value is", "max_tokens": 24, "temperature": 0}
    headers = {"Authorization": f"Bearer {plane.token}"}
    first = httpx.post(plane.url + "/v1/completions", json=body, headers=headers, timeout=120)
    second = httpx.post(plane.url + "/v1/completions", json=body, headers=headers, timeout=120)
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "hit"
    assert second.json()["choices"] == first.json()["choices"]
    bypass = httpx.post(
        plane.url + "/v1/completions", json=body, headers={**headers, "Cache-Control": "no-cache"}, timeout=120
    )
    assert bypass.headers["X-Cache"] == "bypass"
    stats = api.get(f"/api/v1/deployments/{demo['id']}/cache/").json()
    assert stats["hits"] >= 1 and stats["misses"] >= 1 and stats["bytes_served"] > 0
    # a config change is a new revision: the old answer is not served again
    revision = api.patch(f"/api/v1/deployments/{demo['id']}/", json={"config": {"max_wait_ms": 2}}).json()["revision"]
    wait_for(
        lambda: api.get(f"/api/v1/deployments/{demo['id']}/").json()["applied_revision"] == revision,
        what="the new revision to be applied",
    )
    after = httpx.post(plane.url + "/v1/completions", json=body, headers=headers, timeout=120)
    assert after.headers["X-Cache"] == "miss" and after.headers["X-Served-By"] == f"demo/stable/r{revision}"


def test_a_config_change_reaches_the_worker_live(api, demo):
    weights = [1, 1, 1, 2, 1, 1, 1, 0.5]
    body = api.patch(
        f"/api/v1/deployments/{demo['id']}/", json={"config": {"max_batch_size": 12, "router_weights": weights}}
    ).json()
    wait_for(
        lambda: api.get(f"/api/v1/deployments/{demo['id']}/").json()["applied_revision"] == body["revision"],
        what="the revision to be applied",
    )
    live = api.get(f"/api/v1/deployments/{demo['id']}/worker/").json()
    assert live["config"]["max_batch_size"] == 12 and live["config"]["router_weights"] == weights
    assert live["stats"]["rss_bytes"] > 0 and live["stats"]["weight_bytes"] > 0


def test_sessions_are_listed_and_can_be_ended(plane, api):
    client = openai_client(plane)
    for turn in ("Return the", " and then"):
        client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": turn}],
            max_tokens=4,
            extra_body={"session_id": "e2e-conversation"},
        )
    sessions = api.get("/api/v1/sessions/").json()["results"]
    mine = [s for s in sessions if s["id"] == "e2e-conversation"]
    assert mine and mine[0]["kv_cache_bytes"] > 0 and mine[0]["deployment_name"] == "demo"
    ended = api.delete(f"/api/v1/sessions/{mine[0]['deployment']}:e2e-conversation/")
    assert ended.status_code == 200
    assert not [s for s in api.get("/api/v1/sessions/").json()["results"] if s["id"] == "e2e-conversation"]


def test_usage_is_counted_per_token_and_deployment(api):
    def counted():
        rows = api.get("/api/v1/usage/?group_by=token").json()["results"]
        return rows and rows[0]["requests"] > 0 and rows[0]["completion_tokens"] > 0

    wait_for(counted, timeout=30, what="usage to be recorded")
    by_deployment = api.get("/api/v1/usage/?group_by=deployment").json()["results"]
    assert by_deployment[0]["deployment__name"] == "demo"


def test_a_rate_limited_token_gets_429_with_retry_after(plane, api):
    token = api.post(
        "/api/v1/tokens/", json={"name": "limited", "scope": "inference", "rate_limit_per_minute": 2}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"model": "demo", "prompt": "x", "max_tokens": 1}
    statuses = [httpx.post(plane.url + "/v1/completions", json=body, headers=headers, timeout=60) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert statuses[2].status_code == 429 and int(statuses[2].headers["Retry-After"]) >= 1
    assert statuses[2].json()["error"]["code"] == "rate_limit_exceeded"
    # an inference-only token cannot use the REST API
    assert httpx.get(plane.url + "/api/v1/deployments/", headers=headers).status_code == 403


def test_killing_the_worker_under_load_only_fails_requests_in_flight_and_it_comes_back(plane, api, demo):
    revisions_before = api.get(f"/api/v1/deployments/{demo['id']}/revisions/").json()["count"]
    pid = api.get(f"/api/v1/deployments/{demo['id']}/").json()["worker_pid"]
    with Load(plane) as load:
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: (
                api.get(f"/api/v1/deployments/{demo['id']}/").json()["worker_pid"] not in (pid, None)
                and api.get(f"/api/v1/deployments/{demo['id']}/").json()["status"] == "running"
            ),
            what="the restart",
        )
        served_after = load.statuses.count(200)
        wait_for(lambda: load.statuses.count(200) >= served_after + 4, what="requests to succeed after the restart")
    results = load.statuses
    failures = [code for code in results if code != 200]
    assert set(failures) <= {502, 503}, failures  # clean errors (worker down / interrupted), never a hang or a 500
    events = api.get(f"/api/v1/worker-events/?deployment={demo['id']}").json()["results"]
    exited = [e for e in events if e["kind"] == "exited"]
    assert exited and exited[0]["exit_code"] == -9 and exited[0]["log_tail"]
    assert api.get(f"/api/v1/deployments/{demo['id']}/revisions/").json()["count"] == revisions_before


def test_a_restart_under_steady_load_fails_no_request_and_raises_no_alert(plane, api, demo):
    url = f"/api/v1/deployments/{demo['id']}/"
    old_pid = api.get(url).json()["worker_pid"]
    events_url = f"/api/v1/worker-events/?deployment={demo['id']}"
    seen = {e["id"] for e in api.get(events_url).json()["results"]}
    with Load(plane) as load:
        answer = api.post(url + "restart/")
        assert answer.status_code == 202 and answer.json()["restart"]["mode"] == "rolling", answer.text
        wait_for(
            lambda: api.get(url).json()["worker_pid"] not in (old_pid, None) and not pid_alive(old_pid),
            timeout=300,
            what="the new worker to serve and the old one to finish and stop",
        )
        served = load.statuses.count(200)
        wait_for(lambda: load.statuses.count(200) >= served + 4, what="requests served by the new worker")
    results = load.statuses
    assert [code for code in results if code != 200] == []
    events = [e for e in api.get(events_url).json()["results"] if e["id"] not in seen]
    assert any(e["kind"] == "swapped" and "without downtime" in e["message"] for e in events)
    # what the worker-restart alert counts (restarted, exited) is not written by an operator's restart
    assert not [e for e in events if e["kind"] in ("restarted", "exited", "unhealthy")], events


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_control_plane_stops_its_worker(make_plane, sig):
    plane = make_plane()
    with plane.api() as api:
        pid = api.get("/api/v1/deployments/").json()["results"][0]["worker_pid"]
    assert pid_alive(pid)
    assert plane.stop(sig) == 0
    assert not pid_alive(pid), "the worker outlived the control plane"
    assert "worker stopped (the control plane stopped)" in plane.log()


def test_a_killed_control_plane_takes_its_worker_along(make_plane):
    plane = make_plane()
    with plane.api() as api:
        pid = api.get("/api/v1/deployments/").json()["results"][0]["worker_pid"]
    plane.stop(signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), timeout=30, what="the orphaned worker to exit")
