"""The control API: token auth, live config, load/swap/unload, sessions, stats, scoring, health and metrics."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.inference.helpers import LiveServer, Stall, wait_until

ROUTES = [
    ("GET", "/control/config"),
    ("PATCH", "/control/config"),
    ("GET", "/control/config/schema"),
    ("POST", "/control/load"),
    ("POST", "/control/swap"),
    ("POST", "/control/unload"),
    ("GET", "/control/status"),
    ("GET", "/control/sessions"),
    ("DELETE", "/control/sessions/x"),
    ("POST", "/control/sessions/expire"),
    ("GET", "/control/stats"),
    ("POST", "/control/perplexity"),
    ("POST", "/control/experts/reset"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_control_route_needs_the_token(live: LiveServer, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-control-token"}):
        resp = httpx.request(method, live.url + path, headers=headers, json={})
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.json()["error"]["code"] == "invalid_api_key"
    assert live.engine.active_model() is not None  # nothing happened


def _get(live: LiveServer, path: str) -> httpx.Response:
    return httpx.get(live.url + path, headers=live.control_headers, timeout=60)


def _post(live: LiveServer, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(live.url + path, headers=live.control_headers, json=body, timeout=60)


def test_config_changes_apply_live(live: LiveServer) -> None:
    resp = httpx.patch(
        live.url + "/control/config",
        json={"max_batch_size": 4, "max_wait_ms": 2.5, "session_timeout_s": 30, "router_weights": [2, 1, 1, 1]},
        headers=live.control_headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["max_batch_size"] == 4 and resp.json()["router_weights"] == [2.0, 1.0, 1.0, 1.0]
    assert live.engine.config.max_batch_size == 4 and live.engine.config.session_timeout_s == 30
    assert _get(live, "/control/config").json() == resp.json()
    schema = _get(live, "/control/config/schema").json()
    assert schema["max_batch_size"]["minimum"] == 1 and "doc" in schema["router_weights"]


def test_router_weights_shift_the_measured_expert_shares(live: LiveServer) -> None:
    def shares(weights: list[float]) -> list[float]:
        assert httpx.patch(live.url + "/control/config", json={"router_weights": weights}, headers=live.control_headers)
        for i in range(4):
            body = {"model": "tiny-moe", "prompt": f"sample text number {i}", "max_tokens": 30, "temperature": 0}
            assert httpx.post(live.url + "/v1/completions", json=body, timeout=60).status_code == 200
        return _get(live, "/control/stats").json()["expert_activation_shares"]["total"]

    base = shares([1.0, 1.0, 1.0, 1.0])
    boosted = shares([4.0, 1.0, 1.0, 1.0])
    starved = shares([0.0, 1.0, 1.0, 1.0])
    assert boosted[0] > base[0] and starved[0] == 0.0
    metrics = httpx.get(live.url + "/metrics").text
    assert 'lcp_worker_expert_activation_share{expert="0",layer="all"} 0.0' in metrics


def test_stats_have_every_field_the_control_plane_reads(live: LiveServer) -> None:
    httpx.post(live.url + "/v1/completions", json={"model": "tiny-moe", "prompt": "a", "max_tokens": 3})
    stats = _get(live, "/control/stats").json()
    for key in (
        "rss_bytes", "torch_allocated_bytes", "torch_reserved_bytes", "weight_bytes", "kv_cache_bytes", "sessions",
        "queue_depth", "running", "batch_size_histogram", "tokens_per_s", "requests_total", "errors_total",
        "expert_activation_shares", "model", "device", "precision", "config", "uptime_s",
    ):  # fmt: skip
        assert key in stats, key
    assert stats["rss_bytes"] > 0 and stats["weight_bytes"] > 0 and stats["requests_total"] == 1
    assert stats["model"]["id"] == "tiny-moe" and stats["device"] == "cpu" and stats["precision"] == "fp32"
    assert len(stats["expert_activation_shares"]["layers"]) == 2


def test_status_sessions_and_expiry_through_the_api(live: LiveServer) -> None:
    assert _get(live, "/control/status").json()["phase"] == "ready"
    body = {"model": "tiny-moe", "prompt": "hello", "max_tokens": 3, "session_id": "conv-1"}
    assert httpx.post(live.url + "/v1/completions", json=body, timeout=60).status_code == 200
    (session,) = _get(live, "/control/sessions").json()
    assert set(session) >= {"id", "created_at", "last_used_at", "idle_s", "turns", "tokens", "kv_cache_bytes"}
    assert session["id"] == "conv-1" and session["kv_cache_bytes"] > 0
    assert _post(live, "/control/sessions/expire", {"idle_s": 3600}).json()["expired"] == 0
    out = _post(live, "/control/sessions/expire", {"idle_s": 0}).json()
    assert out["expired"] == 1 and out["freed_bytes"] == session["kv_cache_bytes"]
    assert httpx.delete(live.url + "/control/sessions/conv-1", headers=live.control_headers).status_code == 404


def test_perplexity_through_the_api(live: LiveServer) -> None:
    out = _post(live, "/control/perplexity", {"texts": ["hello world", "abc"]}).json()
    assert out == live.engine.perplexity(["hello world", "abc"])
    assert _post(live, "/control/perplexity", {"texts": []}).status_code == 400


def test_a_swap_over_http_keeps_a_stream_in_flight_alive(live: LiveServer, other_checkpoint: Path) -> None:
    body = {"model": "tiny-moe", "prompt": "Hello", "max_tokens": 80, "temperature": 0, "stream": True}
    chunks: list[str] = []
    started = threading.Event()

    def stream() -> None:
        with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=120) as resp:
            for line in resp.iter_lines():
                if line:
                    chunks.append(line)
                    started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(60)
    swap = _post(live, "/control/swap", {"path": str(other_checkpoint), "device": "cpu"})
    reader.join(120)
    assert swap.status_code == 200, swap.text
    assert swap.json()["model"]["id"] == "tiny-moe-v2" and swap.json()["previous"]["drained"]
    assert chunks[-1] == "data: [DONE]" and '"finish_reason":"length"' in chunks[-2]
    models = httpx.get(live.url + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["tiny-moe-v2"]


def test_health_turns_503_on_a_stalled_step_and_recovers(live: LiveServer) -> None:
    assert httpx.get(live.url + "/health").json()["status"] == "ok"
    live.engine.update_config({"stall_timeout_s": 0.2})
    with Stall(live.engine) as stall:
        body = {"model": "tiny-moe", "prompt": "a", "max_tokens": 2}
        reply: dict = {}
        caller = threading.Thread(target=lambda: reply.update(r=httpx.post(live.url + "/v1/completions", json=body)))
        caller.start()
        assert stall.entered.wait(30)
        wait_until(lambda: httpx.get(live.url + "/health").status_code == 503, what="health to turn 503")
        health = httpx.get(live.url + "/health").json()
        assert health["status"] == "stalled" and "stall_timeout_s=0.2" in health["reason"]
    caller.join(60)
    assert reply["r"].status_code == 200
    wait_until(lambda: httpx.get(live.url + "/health").status_code == 200, what="health to recover")


def test_idle_is_healthy_and_health_reports_progress(live: LiveServer) -> None:
    body = httpx.get(live.url + "/health").json()
    assert body["status"] == "ok" and body["model"] == "tiny-moe" and body["waiting"] == 0
    assert body["uptime_s"] >= 0 and body["last_progress_age_s"] >= 0


def test_metrics_use_the_vllm_style_names(live: LiveServer) -> None:
    httpx.post(live.url + "/v1/completions", json={"model": "tiny-moe", "prompt": "a", "max_tokens": 3}, timeout=60)
    text = httpx.get(live.url + "/metrics").text
    for name in (
        "lcp_worker_requests_running", "lcp_worker_requests_waiting", "lcp_worker_time_to_first_token_seconds_bucket",
        "lcp_worker_e2e_request_latency_seconds_count", "lcp_worker_prompt_tokens_total",
        "lcp_worker_generation_tokens_total", "lcp_worker_request_success_total", "lcp_worker_request_failure_total",
        "lcp_worker_requests_rejected_total", "lcp_worker_batch_size_bucket", "lcp_worker_kv_cache_bytes",
        "lcp_worker_sessions", "lcp_worker_expert_activation_share", "lcp_worker_process_resident_memory_bytes",
        "lcp_worker_torch_allocated_bytes", "lcp_worker_torch_reserved_bytes",
    ):  # fmt: skip
        assert name in text, name
    assert "lcp_worker_generation_tokens_total 3.0" in text
    assert 'lcp_worker_request_success_total{finished_reason="length"} 1.0' in text
